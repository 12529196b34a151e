package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

var procSetEvent = syscall.NewLazyDLL("kernel32.dll").NewProc("SetEvent")

func setEvent(t *testing.T, h syscall.Handle) {
	t.Helper()
	if ok, _, err := procSetEvent.Call(uintptr(h)); ok == 0 {
		t.Fatalf("SetEvent: %v", err)
	}
}

// openEventByName opens an existing event to set it, as a tool other than
// the one that created it would.
func openEventByName(t *testing.T, name string) syscall.Handle {
	t.Helper()
	name16, _ := syscall.UTF16PtrFromString(name)
	h, _, err := procOpenEventW.Call(eventModifyState, 0, uintptr(unsafe.Pointer(name16)))
	if h == 0 {
		t.Fatalf("OpenEventW %s: %v", name, err)
	}
	return syscall.Handle(h)
}

func TestDumpEventAsksARunningHangtestForADump(t *testing.T) {
	dir := t.TempDir()
	name := fmt.Sprintf(`Local\reprofarm-dump-test-%d`, os.Getpid())
	// The agent's part: create the event before the start.
	created, err := openDumpEvent(name)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.CloseHandle(created)
	events := startHangtest(t, hangtestCommand("-scenario", "control-deadlock", "-control-chance", "0",
		"-workers", "1", "-iterations", "0", "-duration", "2m", "-dump-dir", dir, "-dump-event", name))
	awaitEvent(t, events, "start")

	var paths []string
	for i, h := range []syscall.Handle{created, openEventByName(t, name)} {
		setEvent(t, h)
		d := awaitEvent(t, events, "dump")
		if d["reason"] != "event "+name {
			t.Errorf("request %d: want reason %q, got %v", i+1, "event "+name, d["reason"])
		}
		path, _ := d["goroutine_dump"].(string)
		body, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("request %d: want the dump file %q: %v", i+1, path, err)
		}
		if !strings.Contains(string(body), ".onDemandDump(") || !strings.HasSuffix(path, "-event.txt") {
			t.Errorf("request %d: want an -event.txt dump written by onDemandDump, got %s:\n%.300s", i+1, path, body)
		}
		paths = append(paths, path)
	}
	if paths[0] == paths[1] {
		t.Errorf("want one file per request, both went to %s", paths[0])
	}
}

func TestUnopenableDumpEventIsASetupFailure(t *testing.T) {
	// A name in a namespace that does not exist can be neither opened nor created.
	cfg, err := parseFlags([]string{"-scenario", "control-deadlock", "-control-chance", "0",
		"-iterations", "10", "-dump-dir", t.TempDir(), "-dump-event", `NoSuchNamespace\reprofarm-dump-1`}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run(cfg, newEmitter(&out), nil); code != exitSetup {
		t.Fatalf("want exit %d (setup), got %d: %s", exitSetup, code, out.String())
	}
	events := decodeLines(t, out.Bytes())
	last := events[len(events)-1]
	if last["event"] != "done" || last["reason"] != "setup-failed" {
		t.Fatalf("want done setup-failed last, got %v", last)
	}
	if e := events[len(events)-2]; e["event"] != "error" || !strings.Contains(e["message"].(string), "-dump-event") {
		t.Fatalf("want an error event naming -dump-event before done, got %v", e)
	}
}
