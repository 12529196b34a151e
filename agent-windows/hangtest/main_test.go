package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMain runs this test binary as hangtest itself when HANGTEST_AS_MAIN=1,
// so a test can start a real hangtest process where no Go toolchain is at
// hand to build one (under Wine, on a lab machine).
func TestMain(m *testing.M) {
	if os.Getenv("HANGTEST_AS_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

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

// hangtestCommand is this test binary run as hangtest (see TestMain).
func hangtestCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "HANGTEST_AS_MAIN=1")
	cmd.Stderr = os.Stderr
	return cmd
}

// startHangtest starts cmd, kills it when the test ends, and returns its
// events, one decoded line at a time.
func startHangtest(t *testing.T, cmd *exec.Cmd) <-chan map[string]any {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	events := make(chan map[string]any, 100)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e map[string]any
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				events <- e
			}
		}
	}()
	return events
}

func awaitEvent(t *testing.T, events <-chan map[string]any, kind string) map[string]any {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("want a %s event, hangtest ended first", kind)
			}
			if e["event"] == kind {
				return e
			}
		case <-deadline:
			t.Fatalf("want a %s event within 30s, got none", kind)
		}
	}
}
