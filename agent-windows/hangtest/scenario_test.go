package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

func runIterations(t *testing.T, name string, cfg config, n int64) {
	t.Helper()
	w, err := scenarios[name].newWorker(0, cfg)
	if err != nil {
		t.Fatalf("%s: setup: %v", name, err)
	}
	defer w.close()
	for i := int64(0); i < n; i++ {
		if err := w.iteration(i); err != nil {
			t.Fatalf("%s: iteration %d: unexpected real error: %v", name, i, err)
		}
	}
}

func TestPipeCloseRaceIterationsSeeOnlyExpectedErrors(t *testing.T) {
	runIterations(t, "pipe-close-race", config{}, 50)
}

func TestSocketPipeMixIterationsSeeOnlyExpectedErrors(t *testing.T) {
	runIterations(t, "socket-pipe-mix", config{}, 50)
}

func TestControlDeadlockNeverHangsAtChanceZero(t *testing.T) {
	runIterations(t, "control-deadlock", config{controlChance: 0, seed: 1}, 10000)
}

func TestClosedPipeErrorsAreExpected(t *testing.T) {
	for _, err := range []error{
		os.ErrClosed,
		&os.PathError{Op: "write", Path: "|1", Err: syscall.EPIPE},
		errors.New("write |1: The pipe is being closed."),
		errors.New("write /dev/pipe: i/o on hungup channel"),
	} {
		if !isExpectedWriteError(err) {
			t.Errorf("want %q to be an expected write error", err)
		}
	}
	if isExpectedWriteError(errors.New("write: no space left on device")) {
		t.Error("want a disk error to be a real error")
	}
	if isExpectedReadError(fmt.Errorf("read: %w", syscall.EIO)) {
		t.Error("want EIO to be a real read error")
	}
}

func TestSocketResetErrorsAreExpected(t *testing.T) {
	for _, err := range []error{
		syscall.ECONNRESET,
		errors.New("wsarecv: An existing connection was forcibly closed by the remote host."),
	} {
		if !isExpectedSocketError(err) {
			t.Errorf("want %q to be an expected socket error", err)
		}
	}
}
