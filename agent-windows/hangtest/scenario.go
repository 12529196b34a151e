package main

import (
	"fmt"
	"sort"
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
