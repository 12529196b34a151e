package main

import "testing"

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
