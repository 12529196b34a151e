//go:build !linux && !windows

package main

import (
	"fmt"
	"runtime"
)

func processCPUSet() ([]int, error) {
	return nil, fmt.Errorf("reading the CPU set is not supported on %s", runtime.GOOS)
}
