package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsRejectsBadValuesNamingTheFlag(t *testing.T) {
	cases := map[string][]string{
		"-scenario":         {"-scenario", "nope"},
		"-workers":          {"-workers", "0"},
		"-on-stall":         {"-on-stall", "panic"},
		"-control-chance":   {"-control-chance", "1.5"},
		"-stall-timeout":    {"-stall-timeout", "0s"},
		"-dump-dir":         {"-dump-dir", "/does/not/exist"},
		"needs a -duration": {"-iterations", "0"},
	}
	for want, args := range cases {
		_, err := parseFlags(args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("args %v: want an error naming %q, got %v", args, want, err)
		}
	}
}

func TestRunCompletesAndReportsTotals(t *testing.T) {
	cfg, err := parseFlags([]string{"-scenario", "control-deadlock", "-control-chance", "0",
		"-workers", "3", "-iterations", "200", "-dump-dir", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run(cfg, newEmitter(&out), nil); code != exitOK {
		t.Fatalf("want exit %d, got %d", exitOK, code)
	}
	events := decodeLines(t, out.Bytes())
	if events[0]["event"] != "start" || events[len(events)-1]["event"] != "done" {
		t.Fatalf("want start first and done last, got %v ... %v", events[0], events[len(events)-1])
	}
	if got := events[len(events)-1]["iterations"]; got != float64(600) {
		t.Fatalf("want 600 iterations in done, got %v", got)
	}
}

func TestDeadlockIsDetectedAndDumped(t *testing.T) {
	dir := t.TempDir()
	cfg, err := parseFlags([]string{"-scenario", "control-deadlock", "-control-chance", "1",
		"-workers", "2", "-iterations", "1000", "-stall-timeout", "200ms",
		"-on-stall", "dump-and-exit", "-dump-dir", dir}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run(cfg, newEmitter(&out), nil); code != exitStalled {
		t.Fatalf("want exit %d (stalled), got %d: %s", exitStalled, code, out.String())
	}
	var stall map[string]any
	for _, e := range decodeLines(t, out.Bytes()) {
		if e["event"] == "stall" {
			stall = e
		}
	}
	if stall == nil {
		t.Fatalf("want a stall event, got %s", out.String())
	}
	dump, err := os.ReadFile(stall["goroutine_dump"].(string))
	if err != nil {
		t.Fatal(err)
	}
	for _, frame := range []string{".lockRightThenLeft(", ".lockLeftThenRight(", "sync.Mutex.Lock"} {
		if !bytes.Contains(dump, []byte(frame)) {
			t.Errorf("want the goroutine dump to name %s", frame)
		}
	}
}

func TestDurationStopsAnUnboundedRun(t *testing.T) {
	cfg, err := parseFlags([]string{"-scenario", "pipe-close-race", "-workers", "2",
		"-iterations", "0", "-duration", "300ms", "-dump-dir", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if code := run(cfg, newEmitter(io.Discard), nil); code != exitOK {
		t.Fatalf("want exit %d, got %d", exitOK, code)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("want the run to last the duration, it ended after %s", el)
	}
}
