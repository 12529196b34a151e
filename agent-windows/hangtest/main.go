// Command hangtest reproduces the Windows CancelIoEx hang of Go programs doing
// synchronous pipe I/O (golang/go#64482), and a positive control that hangs
// everywhere. It reports JSON lines on stdout (docs/hangtest.md), detects a
// stalled worker from its iteration counter, writes all goroutine stacks and,
// with -on-stall=dump-and-wait, stays alive so a process dump can be taken
// from outside.
//
// Exit codes: 0 all iterations done without a real error; 1 done, with real
// errors; 2 bad flags; 3 stalled (with -on-stall=dump-and-exit); 4 the
// scenario could not be set up.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

const (
	exitOK      = 0
	exitErrors  = 1
	exitUsage   = 2
	exitStalled = 3
	exitSetup   = 4
)

const (
	onStallDumpAndWait = "dump-and-wait"
	onStallDumpAndExit = "dump-and-exit"
)

type config struct {
	scenario         string
	workers          int
	iterations       int64
	duration         time.Duration
	progressInterval time.Duration
	stallTimeout     time.Duration
	onStall          string
	dumpDir          string
	dumpEvent        string
	controlChance    float64
	seed             int64
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("hangtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.scenario, "scenario", "pipe-close-race", "what to run: pipe-close-race, socket-pipe-mix or control-deadlock")
	fs.IntVar(&cfg.workers, "workers", 10, "number of concurrent workers")
	fs.Int64Var(&cfg.iterations, "iterations", 100000, "iterations per worker (0: no limit, stop on -duration)")
	fs.DurationVar(&cfg.duration, "duration", 0, "stop starting iterations after this long (0: no limit)")
	fs.DurationVar(&cfg.progressInterval, "progress-interval", time.Second, "how often to emit a progress event")
	fs.DurationVar(&cfg.stallTimeout, "stall-timeout", 30*time.Second, "a worker whose iteration runs this long is stalled")
	fs.StringVar(&cfg.onStall, "on-stall", onStallDumpAndWait, "after the goroutine dump of a stall: dump-and-wait (stay alive for a process dump) or dump-and-exit")
	fs.StringVar(&cfg.dumpDir, "dump-dir", ".", "directory for goroutine dumps")
	fs.StringVar(&cfg.dumpEvent, "dump-event", "", `Windows: name of an event (Local\reprofarm-dump-<id>) that asks for a goroutine dump when set`)
	fs.Float64Var(&cfg.controlChance, "control-chance", 0.001, "control-deadlock: chance per iteration of taking the locks in inverted order")
	fs.Int64Var(&cfg.seed, "seed", 0, "control-deadlock: random seed (0: from the clock)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if _, ok := scenarios[cfg.scenario]; !ok {
		return cfg, fmt.Errorf("-scenario: unknown scenario %q (known: %v)", cfg.scenario, scenarioNames())
	}
	switch {
	case cfg.workers < 1:
		return cfg, fmt.Errorf("-workers: must be at least 1, got %d", cfg.workers)
	case cfg.iterations < 0:
		return cfg, fmt.Errorf("-iterations: must not be negative, got %d", cfg.iterations)
	case cfg.duration < 0:
		return cfg, fmt.Errorf("-duration: must not be negative, got %s", cfg.duration)
	case cfg.iterations == 0 && cfg.duration == 0:
		return cfg, fmt.Errorf("-iterations 0 needs a -duration, or the run never ends")
	case cfg.progressInterval <= 0:
		return cfg, fmt.Errorf("-progress-interval: must be positive, got %s", cfg.progressInterval)
	case cfg.stallTimeout <= 0:
		return cfg, fmt.Errorf("-stall-timeout: must be positive, got %s", cfg.stallTimeout)
	case cfg.onStall != onStallDumpAndWait && cfg.onStall != onStallDumpAndExit:
		return cfg, fmt.Errorf("-on-stall: must be %s or %s, got %q", onStallDumpAndWait, onStallDumpAndExit, cfg.onStall)
	case cfg.controlChance < 0 || cfg.controlChance > 1:
		return cfg, fmt.Errorf("-control-chance: must be between 0 and 1, got %g", cfg.controlChance)
	}
	if cfg.dumpEvent != "" && !dumpEventSupported {
		return cfg, fmt.Errorf("-dump-event: named events exist on Windows only; on %s send SIGQUIT for a dump", runtime.GOOS)
	}
	if info, err := os.Stat(cfg.dumpDir); err != nil || !info.IsDir() {
		return cfg, fmt.Errorf("-dump-dir: %q is not a directory", cfg.dumpDir)
	}
	if cfg.seed == 0 {
		cfg.seed = time.Now().UnixNano()
	}
	return cfg, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(os.Stderr, "hangtest:", err)
		}
		os.Exit(exitUsage)
	}
	os.Exit(run(cfg, newEmitter(os.Stdout), os.Args[1:]))
}

// run executes one hangtest run and returns the exit code. With
// dump-and-wait it does not return once a stall was seen.
func run(cfg config, ev *emitter, args []string) int {
	start := time.Now()
	cpus, cpuErr := processCPUSet()
	startEv := startEvent{
		HangtestVersion: version,
		GoVersion:       runtime.Version(),
		GOOS:            runtime.GOOS,
		GOARCH:          runtime.GOARCH,
		GOMAXPROCS:      runtime.GOMAXPROCS(0),
		NumCPU:          runtime.NumCPU(),
		CPUSet:          cpus,
		PID:             os.Getpid(),
		Scenario:        cfg.scenario,
		Workers:         cfg.workers,
		Iterations:      cfg.iterations,
		DurationS:       cfg.duration.Seconds(),
		StallTimeoutS:   cfg.stallTimeout.Seconds(),
		OnStall:         cfg.onStall,
		Args:            args,
	}
	if cpuErr != nil {
		startEv.CPUSetError = cpuErr.Error()
	}
	ev.emit("start", startEv)

	var eventRequests <-chan struct{} // nil without -dump-event: never ready
	if cfg.dumpEvent != "" {
		var err error
		if eventRequests, err = watchDumpEvent(cfg.dumpEvent); err != nil {
			// The agent asked for this channel to take dumps: without it a
			// hang would lose its evidence, so the run does not start.
			ev.emit("error", errorEvent{Worker: -1, Iteration: -1, Message: "setup: -dump-event: " + err.Error()})
			ev.emit("done", doneEvent{Reason: "setup-failed", ExitCode: exitSetup, PerWorker: []int64{}})
			return exitSetup
		}
	}

	runners := make([]workerRunner, cfg.workers)
	for i := range runners {
		r, err := scenarios[cfg.scenario].newWorker(i, cfg)
		if err != nil {
			ev.emit("error", errorEvent{Worker: i, Iteration: -1, Message: "setup: " + err.Error()})
			ev.emit("done", doneEvent{Reason: "setup-failed", ExitCode: exitSetup, PerWorker: []int64{}})
			return exitSetup
		}
		runners[i] = r
	}

	tr := newTracker(cfg.workers, start)
	var stopping atomic.Bool // set on stall: finish current iterations, start no more
	var errorCount atomic.Int64
	var wg sync.WaitGroup
	for i, r := range runners {
		wg.Add(1)
		go func(worker int, r workerRunner) {
			defer wg.Done()
			defer tr.finish(worker)
			defer r.close()
			for n := int64(0); cfg.iterations == 0 || n < cfg.iterations; n++ {
				if stopping.Load() || (cfg.duration > 0 && time.Since(start) >= cfg.duration) {
					return
				}
				tr.begin(worker, n, time.Now())
				err := r.iteration(n)
				tr.end(worker, time.Now())
				if err != nil {
					errorCount.Add(1)
					ev.emit("error", errorEvent{Worker: worker, Iteration: n, Message: err.Error()})
				}
			}
		}(i, r)
	}
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(allDone)
	}()

	dumpRequests := make(chan os.Signal, 1)
	if len(dumpSignals) > 0 {
		signal.Notify(dumpRequests, dumpSignals...)
	}

	progress := func() progressEvent {
		total, per := tr.totals()
		return progressEvent{ElapsedS: time.Since(start).Seconds(), Iterations: total, PerWorker: per, Errors: errorCount.Load()}
	}
	progressTicker := time.NewTicker(cfg.progressInterval)
	defer progressTicker.Stop()
	watchdog := time.NewTicker(watchdogPeriod(cfg.stallTimeout))
	defer watchdog.Stop()
	stalled := false
	for {
		select {
		case <-allDone:
			p := progress()
			code, reason := exitOK, "completed"
			if p.Errors > 0 {
				code, reason = exitErrors, "completed-with-errors"
			}
			ev.emit("done", doneEvent{ElapsedS: p.ElapsedS, Iterations: p.Iterations, PerWorker: p.PerWorker, Errors: p.Errors, Reason: reason, ExitCode: code})
			return code
		case <-progressTicker.C:
			ev.emit("progress", progress())
		case sig := <-dumpRequests:
			ev.emit("dump", onDemandDump(cfg.dumpDir, "signal", sig.String()))
		case <-eventRequests:
			ev.emit("dump", onDemandDump(cfg.dumpDir, "event", "event "+cfg.dumpEvent))
		case now := <-watchdog.C:
			if stalled {
				continue
			}
			workers := tr.stalled(now, cfg.stallTimeout)
			if len(workers) == 0 {
				continue
			}
			stalled = true
			stopping.Store(true)
			path, err := writeGoroutineDump(cfg.dumpDir, "stall", now)
			p := progress()
			s := stallEvent{ElapsedS: p.ElapsedS, Workers: workers, GoroutineDump: path, Action: cfg.onStall,
				Iterations: p.Iterations, GoroutineCount: runtime.NumGoroutine()}
			if err != nil {
				s.DumpError = err.Error()
			}
			ev.emit("stall", s)
			if cfg.onStall == onStallDumpAndExit {
				ev.emit("done", doneEvent{ElapsedS: p.ElapsedS, Iterations: p.Iterations, PerWorker: p.PerWorker, Errors: p.Errors, Reason: "stalled", ExitCode: exitStalled})
				return exitStalled
			}
			// dump-and-wait: keep reporting progress (the stalled workers'
			// counters stay still) until the agent has its dumps and kills us.
		}
	}
}

// onDemandDump writes a goroutine dump asked for from outside: kind names the
// file (goroutines-<pid>-<n>-<kind>.txt), reason the channel in the event.
func onDemandDump(dir, kind, reason string) dumpEvent {
	path, err := writeGoroutineDump(dir, kind, time.Now())
	d := dumpEvent{Reason: reason, GoroutineDump: path}
	if err != nil {
		d.DumpError = err.Error()
	}
	return d
}

// watchdogPeriod checks often enough to notice a stall within a quarter of
// the timeout, but not so often that it costs the workers CPU time.
func watchdogPeriod(stallTimeout time.Duration) time.Duration {
	p := stallTimeout / 4
	if p < 10*time.Millisecond {
		p = 10 * time.Millisecond
	}
	if p > time.Second {
		p = time.Second
	}
	return p
}
