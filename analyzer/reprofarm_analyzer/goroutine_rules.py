"""The goroutine rules, as data: read top to bottom, first match wins.

``RULES_VERSION`` is stored with every analysis. Change it whenever a table below changes
what a dump would be labelled or how its signature reads: the worker re-analyses stored
dumps whose analysis has an older version, so old hangs move to the new buckets.

Two tables:

* ``IGNORED``: goroutines that are never the hang, set aside before any rule runs (the
  dumper itself, the runtime's idle helpers, hangtest's and ``testing``'s own harness).
* ``RULES``: each names *roles* that distinct stuck goroutines must fill. A role matches a
  goroutine whose stack has one of ``anchors`` among its innermost ``depth`` frames (any
  stuck goroutine if there are no anchors), with one of ``under`` somewhere below that
  frame, in one of ``states``. ``absent`` names functions no goroutine of the dump may
  show; ``triggers`` limits a rule to dumps written for one of those reasons.

The Go functions named here, and the Go source they come from, are listed in
docs/analyzer.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from reprofarm_protocol.analysis import Label

from reprofarm_analyzer.dump_context import HANG_TRIGGERS, Trigger

RULES_VERSION = 3
"""2 named the crash kind in crash signatures. 3: pasted text reads differently (a mark before
a frame, a blank line under a header, a page's ``<br>`` and tags, ``go test -json`` output
per package) and a half pattern's evidence names the frames found and missing: a kept pasted
dump may get another label, and every stored report's evidence is redone."""


@dataclass(frozen=True, slots=True)
class Ignore:
    """Goroutines that match are set aside. Empty fields do not constrain."""

    name: str
    why: str
    states: frozenset[str] = frozenset()
    functions: frozenset[str] = frozenset()
    tops: tuple[tuple[str, ...], ...] = ()
    """The stack's meaningful frames (plumbing skipped) start with one of these runs."""


@dataclass(frozen=True, slots=True)
class Role:
    """One part a stuck goroutine plays in a rule."""

    name: str
    why: str
    anchors: frozenset[str] = frozenset()
    under: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()
    depth: int = 8


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    label: Label
    why: str
    roles: tuple[Role, ...] = ()
    absent: frozenset[str] = frozenset()
    triggers: frozenset[Trigger] = frozenset()


NOT_BLOCKED = frozenset(
    {"running", "runnable", "idle", "dead", "copystack", "preempted", "sleep", "moribund"}
)
"""States of a goroutine that is not waiting on anything: it cannot be the stuck one.
``sleep`` (time.Sleep) wakes by itself."""

CANCEL_IO = frozenset({"syscall.CancelIoEx", "golang.org/x/sys/windows.CancelIoEx"})
SYNC_IO = frozenset(
    {
        "syscall.ReadFile",
        "syscall.WriteFile",
        "syscall.readFile",
        "syscall.writeFile",
        "golang.org/x/sys/windows.ReadFile",
        "golang.org/x/sys/windows.WriteFile",
    }
)
MUTEX_LOCK = frozenset({"sync.(*Mutex).Lock", "internal/sync.(*Mutex).Lock"})

IGNORED: tuple[Ignore, ...] = (
    Ignore(
        "dumper",
        "the goroutine writing the dump (hangtest, runtime.Stack, pprof, the test alarm)",
        functions=frozenset(
            {
                "main.allGoroutineStacks",
                "main.writeGoroutineDump",
                "runtime.Stack",
                "runtime/debug.Stack",
                "runtime/debug.PrintStack",
                "runtime/pprof.writeGoroutineStacks",
                "runtime/pprof.writeGoroutine",
                "runtime/pprof.(*Profile).WriteTo",
                "testing.(*M).startAlarm.func1",
            }
        ),
    ),
    Ignore(
        "runtime-idle",
        "the runtime's own helpers parked between jobs",
        states=frozenset(
            {
                "GC worker (idle)",
                "force gc (idle)",
                "GC sweep wait",
                "GC scavenge wait",
                "finalizer wait",
                "cleanup wait",
                "timer goroutine (idle)",
            }
        ),
    ),
    Ignore(
        "runtime-helpers",
        "runtime and os/signal goroutines that wait for work by design",
        functions=frozenset(
            {
                "runtime.forcegchelper",
                "runtime.bgsweep",
                "runtime.bgscavenge",
                "runtime.runfinq",
                "runfinq",
                "runtime.gcBgMarkWorker",
                "runtime.timerproc",
                "runtime.ensureSigM.func1",
                "os/signal.signal_recv",
                "os/signal.loop",
                "runtime/pprof.profileWriter",
            }
        ),
    ),
    Ignore(
        "hangtest-harness",
        "hangtest's event loop, its wait for all workers, and workers waiting for their"
        " iteration's goroutines (those goroutines are the ones named)",
        tops=(
            ("main.run",),
            ("sync.(*WaitGroup).Wait", "main.run.func2"),
            ("main.firstError",),
            ("sync.(*WaitGroup).Wait", "main.(*controlDeadlockWorker).iteration"),
        ),
    ),
    Ignore(
        "hangtest-dump-event",
        "hangtest's watcher of the agent's named dump event (Windows), parked in"
        " WaitForSingleObject for the whole run",
        functions=frozenset({"main.watchDumpEvent.func1"}),
    ),
    Ignore(
        "testing-harness",
        "the testing package waiting for a test or subtest to finish (the test is named)",
        tops=(
            ("testing.(*T).Run",),
            ("testing.(*T).Parallel",),
            ("testing.runTests",),
            ("testing.(*M).Run",),
            ("testing.tRunner.func1",),
        ),
    ),
)

CANCELLER = Role(
    "canceller",
    "waits inside CancelIoEx, called when a file, pipe or socket is closed",
    anchors=CANCEL_IO,
)
SYNC_READER = Role(
    "sync-io",
    "sits in a synchronous ReadFile/WriteFile system call",
    anchors=SYNC_IO,
    states=frozenset({"syscall"}),
)
CLOSE_WAITER = Role(
    "closer",
    "waits inside internal/poll.(*FD).Close for the other users of the descriptor",
    anchors=frozenset({"internal/poll.(*FD).Close"}),
)
LEFT_LOCKER = Role(
    "left-then-right",
    "hangtest's control goroutine waiting for its second lock",
    anchors=MUTEX_LOCK,
    under=frozenset({"main.lockLeftThenRight"}),
)
RIGHT_LOCKER = Role(
    "right-then-left",
    "hangtest's inverted control goroutine waiting for its second lock",
    anchors=MUTEX_LOCK,
    under=frozenset({"main.lockRightThenLeft"}),
)
ANY_STUCK = Role("stuck", "blocked and not part of the runtime or a harness")

RULES: tuple[Rule, ...] = (
    Rule(
        "cancelioex-with-sync-io",
        Label.CANCELIOEX_SYNC_IO,
        "the hang of golang/go#64482: CancelIoEx waits for a cancel APC that a thread in"
        " synchronous I/O cannot run",
        roles=(CANCELLER, SYNC_READER),
    ),
    Rule(
        "close-waits-for-sync-io",
        Label.CLOSE_WAITS_SYNC_IO,
        "Close waits for the descriptor's last user, who sits in synchronous I/O on Windows",
        roles=(CLOSE_WAITER, SYNC_READER),
        absent=CANCEL_IO,
    ),
    Rule(
        "control-lock-inversion",
        Label.CONTROL_DEADLOCK,
        "hangtest's positive control: two goroutines took two mutexes in opposite orders",
        roles=(LEFT_LOCKER, RIGHT_LOCKER),
    ),
    Rule(
        "stuck-goroutines",
        Label.OTHER_HANG,
        "goroutines are stuck, in none of the shapes above",
        roles=(ANY_STUCK,),
    ),
    Rule(
        "hang-reported-nothing-stuck",
        Label.OTHER_HANG,
        "the dump was written because the process hung, but no goroutine in it is stuck"
        " (cut dump, busy loop, or the stuck goroutine ran on another thread)",
        triggers=HANG_TRIGGERS,
    ),
    Rule("nothing-stuck", Label.NO_HANG, "no goroutine is stuck"),
)
