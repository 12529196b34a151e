package main

// control-deadlock: a positive control that hangs on every OS. Two goroutines
// each take two mutexes. Usually both take them in the same order and nothing
// can go wrong. With probability -control-chance per iteration, the second
// goroutine takes them in the opposite order: a real lock-order inversion.
// It deadlocks only if both goroutines get their first lock before either
// gets its second, which is a genuine scheduling race (the yield between the
// two locks widens the window, as any preemption point does in real code).
// Nothing here sleeps or blocks on purpose; the measured hang rates are in
// docs/hangtest.md.

import (
	"math/rand"
	"runtime"
	"sync"
)

type controlDeadlock struct{}

type controlDeadlockWorker struct {
	chance float64
	rng    *rand.Rand
}

func (controlDeadlock) newWorker(worker int, cfg config) (workerRunner, error) {
	return &controlDeadlockWorker{
		chance: cfg.controlChance,
		rng:    rand.New(rand.NewSource(cfg.seed + int64(worker))),
	}, nil
}

func (c *controlDeadlockWorker) close() {}

func (c *controlDeadlockWorker) iteration(int64) error {
	var left, right sync.Mutex
	inverted := c.rng.Float64() < c.chance
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		lockLeftThenRight(&left, &right)
	}()
	go func() {
		defer wg.Done()
		if inverted {
			lockRightThenLeft(&left, &right)
		} else {
			lockLeftThenRight(&left, &right)
		}
	}()
	wg.Wait()
	return nil
}

// The two orders are separate named functions so that a goroutine dump says
// which goroutine holds which lock.

//go:noinline
func lockLeftThenRight(left, right *sync.Mutex) {
	left.Lock()
	runtime.Gosched()
	right.Lock()
	right.Unlock()
	left.Unlock()
}

//go:noinline
func lockRightThenLeft(left, right *sync.Mutex) {
	right.Lock()
	runtime.Gosched()
	left.Lock()
	left.Unlock()
	right.Unlock()
}
