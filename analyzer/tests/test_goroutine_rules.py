"""One test per rule and per ignore entry of goroutine_rules, in table order.

The stacks below are written inline in Go's traceback format to pin one rule each. They
are fixtures, not dumps: real dumps live in corpus/goroutines/ (and no real public dump of
the two Windows I/O hangs exists there yet, see SOURCES.md).
"""

from __future__ import annotations

import pytest
from reprofarm_analyzer.analysis import analyze_goroutines
from reprofarm_analyzer.goroutine_rules import IGNORED, RULES, RULES_VERSION
from reprofarm_protocol.analysis import Label

STALL = "# hangtest goroutine dump\n# reason: stall\n\n"
SIGNAL = "# hangtest goroutine dump\n# reason: signal\n\n"


def block(gid: int, state: str, *functions: str) -> str:
    lines = [f"goroutine {gid} [{state}]:"]
    for n, function in enumerate(functions):
        lines += [f"{function}(0xc000{gid:04x}{n:02x}?)", f"\t/src/{n}.go:{10 + n} +0x{n + 16:x}"]
    return "\n".join(lines) + "\n"


def dump(*blocks: str, preamble: str = STALL) -> str:
    return preamble + "\n".join(blocks)


CANCELLER = block(
    21,
    "syscall, 9 minutes",
    "syscall.SyscallN",
    "syscall.Syscall",
    "syscall.CancelIoEx",
    "internal/poll.(*FD).Close",
    "os.(*file).close",
    "os.(*File).Close",
    "main.closeAfter",
)
READER = block(
    20,
    "syscall, 9 minutes",
    "syscall.SyscallN",
    "syscall.readFile",
    "syscall.ReadFile",
    "internal/poll.(*FD).Read",
    "os.(*File).read",
    "os.(*File).Read",
    "main.pipeReadUntilClosed",
)
CLOSE_WAITER = block(
    22,
    "semacquire, 9 minutes",
    "internal/poll.runtime_Semacquire",
    "internal/poll.(*FD).Close",
    "os.(*file).close",
    "os.(*File).Close",
    "main.closeAfter",
)
LEFT = block(
    30,
    "sync.Mutex.Lock",
    "internal/sync.runtime_SemacquireMutex",
    "internal/sync.(*Mutex).lockSlow",
    "internal/sync.(*Mutex).Lock",
    "sync.(*Mutex).Lock",
    "main.lockLeftThenRight",
    "main.(*controlDeadlockWorker).iteration.func1",
)
RIGHT = block(
    31,
    "sync.Mutex.Lock",
    "internal/sync.runtime_SemacquireMutex",
    "internal/sync.(*Mutex).lockSlow",
    "internal/sync.(*Mutex).Lock",
    "sync.(*Mutex).Lock",
    "main.lockRightThenLeft",
    "main.(*controlDeadlockWorker).iteration.func2",
)
CHANNEL = block(40, "chan receive", "main.waitForever", "main.main")


def rule_named(name: str):
    return next(r for r in RULES if r.name == name)


def test_rules_version_is_three() -> None:
    """2: crash signatures name the crash kind (``no-hang:crash:SIGSEGV``). 3: pasted text
    reads differently (marks, blank lines under headers, ``<br>``, test2json per package)
    and half-pattern evidence names frames, so stored reports are redone."""
    assert RULES_VERSION == 3


def test_rule_cancelioex_with_sync_io() -> None:
    a = analyze_goroutines(dump(CANCELLER, READER))
    assert a.label is Label.CANCELIOEX_SYNC_IO
    assert a.signature == (
        "cancelioex-sync-io:syscall.CancelIoEx,internal/poll.(*FD).Close,os.(*file).close"
        "|syscall.ReadFile,internal/poll.(*FD).Read,os.(*File).read"
    )
    roles = {
        e.detail.split(" ")[0]: e.goroutines
        for e in a.evidence
        if e.rule == "cancelioex-with-sync-io"
    }
    assert roles == {"canceller": [21], "sync-io": [20]}


def test_rule_close_waits_for_sync_io() -> None:
    a = analyze_goroutines(dump(CLOSE_WAITER, READER))
    assert a.label is Label.CLOSE_WAITS_SYNC_IO
    assert a.signature == (
        "close-waits-sync-io:internal/poll.(*FD).Close,os.(*file).close,os.(*File).Close"
        "|syscall.ReadFile,internal/poll.(*FD).Read,os.(*File).read"
    )


def test_close_waits_needs_no_cancelioex_anywhere() -> None:
    running_cancel = block(23, "running", "syscall.CancelIoEx", "internal/poll.(*FD).Close")
    a = analyze_goroutines(dump(CLOSE_WAITER, READER, running_cancel))
    assert rule_named("close-waits-for-sync-io").absent
    assert a.label is Label.OTHER_HANG


def test_close_waiting_for_a_poller_read_is_not_sync_io() -> None:
    poller_read = block(
        24,
        "IO wait, 9 minutes",
        "internal/poll.runtime_pollWait",
        "internal/poll.(*pollDesc).wait",
        "internal/poll.(*FD).Read",
        "net.(*netFD).Read",
    )
    assert analyze_goroutines(dump(CLOSE_WAITER, poller_read)).label is Label.OTHER_HANG


def test_one_goroutine_cannot_fill_two_roles() -> None:
    both = block(25, "syscall", "syscall.CancelIoEx", "syscall.ReadFile")
    assert analyze_goroutines(dump(both)).label is Label.OTHER_HANG


def test_rule_control_lock_inversion() -> None:
    a = analyze_goroutines(dump(LEFT, RIGHT))
    assert a.label is Label.CONTROL_DEADLOCK
    assert a.signature == (
        "control-deadlock:sync.(*Mutex).Lock,main.lockLeftThenRight,"
        "main.(*controlDeadlockWorker).iteration.func1|sync.(*Mutex).Lock,main.lockRightThenLeft,"
        "main.(*controlDeadlockWorker).iteration.func2"
    )


def test_control_needs_both_orders() -> None:
    assert analyze_goroutines(dump(LEFT, LEFT.replace("goroutine 30", "goroutine 32"))).label is (
        Label.OTHER_HANG
    )


def test_rule_stuck_goroutines() -> None:
    a = analyze_goroutines(dump(CHANNEL))
    assert (a.label, a.signature) == (
        Label.OTHER_HANG,
        "other-hang:chan receive@main.waitForever,main.main",
    )
    assert [(g.count, g.state) for g in a.stuck] == [(1, "chan receive")]


def test_rule_hang_reported_nothing_stuck() -> None:
    alarm = block(50, "running", "testing.(*M).startAlarm.func1")
    a = analyze_goroutines(dump(alarm, preamble="panic: test timed out after 10m0s\n\n"))
    assert (a.label, a.signature) == (Label.OTHER_HANG, "other-hang:test-timeout")


def test_rule_nothing_stuck() -> None:
    a = analyze_goroutines(dump(block(1, "running", "main.main"), preamble="panic: boom\n\n"))
    assert (a.label, a.signature) == (Label.NO_HANG, "no-hang:crash:panic")


def test_crash_dump_names_no_stuck_goroutine() -> None:
    a = analyze_goroutines(dump(CANCELLER, READER, preamble="panic: boom\n\n"))
    assert a.label is Label.NO_HANG
    assert a.stuck == []


def test_on_demand_dump_counts_only_waits_of_a_minute() -> None:
    fresh = dump(
        CANCELLER.replace(", 9 minutes", ""), READER.replace(", 9 minutes", ""), preamble=SIGNAL
    )
    assert analyze_goroutines(fresh).label is Label.NO_HANG
    assert analyze_goroutines(dump(CANCELLER, READER, preamble=SIGNAL)).label is (
        Label.CANCELIOEX_SYNC_IO
    )


IGNORE_EXAMPLES = {
    "dumper": block(1, "running", "main.allGoroutineStacks", "main.writeGoroutineDump", "main.run"),
    "runtime-idle": block(2, "GC worker (idle)", "runtime.gopark", "runtime.gcBgMarkWorker"),
    "runtime-helpers": block(3, "syscall", "os/signal.signal_recv", "os/signal.loop"),
    "hangtest-harness": block(
        4, "chan receive", "main.firstError", "main.pipeCloseRaceWorker.iteration", "main.run.func1"
    ),
    "hangtest-dump-event": block(
        6, "syscall", "syscall.SyscallN", "syscall.WaitForSingleObject", "main.watchDumpEvent.func1"
    ),
    "testing-harness": block(5, "chan receive", "testing.(*T).Run", "testing.runTests.func1"),
}


def test_every_ignore_entry_has_an_example() -> None:
    assert set(IGNORE_EXAMPLES) == {i.name for i in IGNORED}


@pytest.mark.parametrize("name", sorted(IGNORE_EXAMPLES))
def test_ignore_entry_sets_the_goroutine_aside(name: str) -> None:
    alone = analyze_goroutines(dump(IGNORE_EXAMPLES[name], preamble=""))
    assert alone.label is Label.NO_HANG, alone.stuck
    assert any(e.rule == "ignored" and name in e.detail for e in alone.evidence)
