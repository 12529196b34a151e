//go:build !windows

package main

import (
	"io"
	"strings"
	"testing"
)

func TestDumpEventFlagIsRefusedOffWindows(t *testing.T) {
	_, err := parseFlags([]string{"-dump-event", `Local\reprofarm-dump-1`}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-dump-event") || !strings.Contains(err.Error(), "Windows only") {
		t.Fatalf("want an error naming -dump-event and Windows only, got %v", err)
	}
}
