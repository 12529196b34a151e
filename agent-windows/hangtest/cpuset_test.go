package main

import (
	"reflect"
	"runtime"
	"testing"
)

func TestCPUsFromMaskSpansWords(t *testing.T) {
	got := cpusFromMask([]uint64{0b1011, 0, 1 << 63})
	want := []int{0, 1, 3, 191}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("want %v, got %v", want, got)
	}
}

func TestProcessCPUSetMatchesNumCPU(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "windows" {
		t.Skip("CPU set is read on Linux and Windows only")
	}
	cpus, err := processCPUSet()
	if err != nil {
		t.Fatal(err)
	}
	// runtime.NumCPU is the size of the affinity set at start-up.
	if len(cpus) != runtime.NumCPU() {
		t.Fatalf("want %d CPUs as runtime.NumCPU says, got %v", runtime.NumCPU(), cpus)
	}
}
