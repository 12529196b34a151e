package main

// pipe-close-race: the behaviour of the field report (see the-hang.md) and of
// Go's flaky TestPipeIOCloseRace (golang/go#64482). A writer and a reader
// hammer a fresh pipe while a closer closes both ends after 1 ms. On Windows,
// Close calls CancelIoEx on a handle whose thread waits in synchronous
// ReadFile/WriteFile, and the cancel APC may never be delivered.

import (
	"fmt"
	"os"
	"time"
)

type pipeCloseRace struct{}

type pipeCloseRaceWorker struct{}

func (pipeCloseRace) newWorker(int, config) (workerRunner, error) {
	return pipeCloseRaceWorker{}, nil
}

var pipeMessage = []byte("hi")

func (pipeCloseRaceWorker) iteration(int64) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("os.Pipe: %w", err)
	}
	errs := make(chan error, 3)
	go func() { errs <- pipeWriteUntilClosed(w) }()
	go func() { errs <- pipeReadUntilClosed(r) }()
	go func() { errs <- closeAfter(time.Millisecond, r, w) }()
	return firstError(errs, 3)
}

func (pipeCloseRaceWorker) close() {}

func pipeWriteUntilClosed(w *os.File) error {
	for {
		n, err := w.Write(pipeMessage)
		if err != nil {
			if isExpectedWriteError(err) {
				return nil
			}
			return fmt.Errorf("write: %w", err)
		}
		if n != len(pipeMessage) {
			return shortIOError("write", n, len(pipeMessage))
		}
	}
}

func pipeReadUntilClosed(r *os.File) error {
	buf := make([]byte, len(pipeMessage))
	for {
		n, err := r.Read(buf)
		if err != nil {
			if isExpectedReadError(err) {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		}
		if n != len(buf) {
			return shortIOError("read", n, len(buf))
		}
	}
}

// closeAfter sleeps, then closes the files in the order given: the read end
// first, as in the report, so the writer sees the pipe break under it.
func closeAfter(d time.Duration, files ...interface{ Close() error }) error {
	time.Sleep(d)
	for _, f := range files {
		if err := f.Close(); err != nil {
			return fmt.Errorf("close: %w", err)
		}
	}
	return nil
}
