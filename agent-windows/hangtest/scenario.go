package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"
)

// A scenario makes one iteration runner per worker. An iteration returns nil
// when everything that happened was expected, and the first real error
// otherwise. A hang is an iteration that never returns.
type scenario interface {
	newWorker(worker int, cfg config) (workerRunner, error)
}

type workerRunner interface {
	iteration(n int64) error
	close()
}

var scenarios = map[string]scenario{
	"pipe-close-race":  pipeCloseRace{},
	"socket-pipe-mix":  socketPipeMix{},
	"control-deadlock": controlDeadlock{},
}

func scenarioNames() []string {
	names := make([]string, 0, len(scenarios))
	for name := range scenarios {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// closedMessages are the texts of errors that mean "the other side closed
// the pipe" on the platforms Go supports: EPIPE, Windows ERROR_NO_DATA, and
// Plan 9's hangup.
var closedMessages = []string{"broken pipe", "pipe is being closed", "hungup channel"}

// isExpectedWriteError reports whether a pipe write failed only because the
// pipe was closed, which is what the closer goroutine is there to cause.
func isExpectedWriteError(err error) bool {
	if errors.Is(err, os.ErrClosed) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, m := range closedMessages {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// isExpectedReadError reports whether a pipe read ended only because the
// write end or the read end was closed.
func isExpectedReadError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed)
}

// firstError returns the first non-nil error received from n senders.
func firstError(errs <-chan error, n int) error {
	var first error
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func shortIOError(op string, n, want int) error {
	return fmt.Errorf("short %s: %d of %d bytes", op, n, want)
}
