package main

// Stall detection works from per-worker iteration counters, never from output
// silence: one stuck worker is a hang even while the other workers progress.

import (
	"sync/atomic"
	"time"
)

// workerState is written by its worker and read by the watchdog, so every
// field is atomic.
type workerState struct {
	completed atomic.Int64 // iterations finished
	current   atomic.Int64 // iteration in progress (0-based), valid while busy
	// lastChange is when the worker last started or finished an iteration,
	// as nanoseconds since the run started (monotonic clock).
	lastChange atomic.Int64
	busy       atomic.Bool
	finished   atomic.Bool
}

// tracker holds the counters of all workers of one run.
type tracker struct {
	start   time.Time
	workers []workerState
}

func newTracker(workers int, start time.Time) *tracker {
	return &tracker{start: start, workers: make([]workerState, workers)}
}

func (t *tracker) begin(worker int, iteration int64, now time.Time) {
	w := &t.workers[worker]
	w.current.Store(iteration)
	w.lastChange.Store(int64(now.Sub(t.start)))
	w.busy.Store(true)
}

func (t *tracker) end(worker int, now time.Time) {
	w := &t.workers[worker]
	w.busy.Store(false)
	w.completed.Add(1)
	w.lastChange.Store(int64(now.Sub(t.start)))
}

func (t *tracker) finish(worker int) {
	t.workers[worker].finished.Store(true)
}

func (t *tracker) totals() (total int64, perWorker []int64) {
	perWorker = make([]int64, len(t.workers))
	for i := range t.workers {
		perWorker[i] = t.workers[i].completed.Load()
		total += perWorker[i]
	}
	return total, perWorker
}

func (t *tracker) allFinished() bool {
	for i := range t.workers {
		if !t.workers[i].finished.Load() {
			return false
		}
	}
	return true
}

// stalled lists the workers whose current iteration has run longer than
// timeout. A worker between iterations is never stalled: it is about to start
// one, and the time it takes to get there is the scheduler's, not the bug's.
func (t *tracker) stalled(now time.Time, timeout time.Duration) []stalledWorker {
	var out []stalledWorker
	elapsed := now.Sub(t.start)
	for i := range t.workers {
		w := &t.workers[i]
		if w.finished.Load() || !w.busy.Load() {
			continue
		}
		since := time.Duration(w.lastChange.Load())
		if stuck := elapsed - since; stuck >= timeout {
			out = append(out, stalledWorker{
				Worker:    i,
				Iteration: w.current.Load(),
				StalledS:  stuck.Seconds(),
				Since:     t.start.Add(since).UTC().Format(time.RFC3339Nano),
			})
		}
	}
	return out
}
