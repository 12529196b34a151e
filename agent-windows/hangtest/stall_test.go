package main

import (
	"testing"
	"time"
)

func TestOneStuckWorkerIsStalledWhileOthersProgress(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tr := newTracker(3, t0)
	tr.begin(0, 0, t0)
	tr.begin(1, 0, t0)
	tr.end(1, t0.Add(time.Second))
	tr.begin(1, 1, t0.Add(time.Second))
	tr.end(1, t0.Add(2*time.Second))
	tr.begin(1, 2, t0.Add(2*time.Second))
	got := tr.stalled(t0.Add(2500*time.Millisecond), 2*time.Second)
	if len(got) != 1 || got[0].Worker != 0 || got[0].Iteration != 0 {
		t.Fatalf("want worker 0 stalled in iteration 0, got %+v", got)
	}
	if got[0].StalledS != 2.5 {
		t.Errorf("want stalled for 2.5s, got %v", got[0].StalledS)
	}
}

func TestIdleOrFinishedWorkerIsNotStalled(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tr := newTracker(2, t0)
	tr.begin(0, 0, t0)
	tr.end(0, t0) // idle between iterations
	tr.begin(1, 0, t0)
	tr.finish(1)
	if got := tr.stalled(t0.Add(time.Hour), time.Second); len(got) != 0 {
		t.Fatalf("want no stalled worker, got %+v", got)
	}
}

func TestTotalsSumPerWorkerCounts(t *testing.T) {
	t0 := time.Unix(0, 0)
	tr := newTracker(2, t0)
	for i := 0; i < 3; i++ {
		tr.begin(0, int64(i), t0)
		tr.end(0, t0)
	}
	tr.begin(1, 0, t0)
	tr.end(1, t0)
	total, per := tr.totals()
	if total != 4 || per[0] != 3 || per[1] != 1 {
		t.Fatalf("want total 4 as [3 1], got %d as %v", total, per)
	}
}

func TestWatchdogPeriodIsBounded(t *testing.T) {
	for _, c := range []struct{ timeout, want time.Duration }{
		{10 * time.Millisecond, 10 * time.Millisecond},
		{2 * time.Second, 500 * time.Millisecond},
		{time.Minute, time.Second},
	} {
		if got := watchdogPeriod(c.timeout); got != c.want {
			t.Errorf("watchdogPeriod(%s): want %s, got %s", c.timeout, c.want, got)
		}
	}
}
