"""Why a goroutine dump was written: the text around it tells a hang from a crash.

The same goroutine stacks mean different things in different dumps. A goroutine blocked in
``chan receive`` is a hang's evidence in a test-timeout dump, and an innocent bystander in
a crash. So before any rule looks at goroutines, the preamble (and the trailer, where the
``go`` command writes its verdict) is read for the trigger:

=================  ===============================================================  ======
trigger            text (Go source that prints it)                                  hang?
=================  ===============================================================  ======
``stall``          hangtest ``# reason: stall`` (``agent-windows/hangtest/dump.go``) yes
``test-timeout``   ``panic: test timed out after`` (``src/testing/testing.go``       yes
                   ``startAlarm``); ``*** Test killed with quit: ran too long``
                   (``src/cmd/go/internal/test``)
``deadlock``       ``fatal error: all goroutines are asleep - deadlock!``            yes
                   (``src/runtime/proc.go`` ``checkdead``)
``quit``           ``SIGQUIT: quit``, ``SIGABRT: abort`` with ``sigcode=0`` (sent by  yes
                   ``kill``: someone thought the process hung)
``request``        hangtest ``# reason: signal`` / ``event``: an on-demand dump         no
``crash``          any other ``panic:``, ``fatal error:``, ``SIG...:``, ``Exception``  no
``unknown``        none of these (a pasted excerpt, ``pprof?debug=2``)               maybe
=================  ===============================================================  ======
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from reprofarm_analyzer.goroutine_model import GoroutineDump


class Trigger(StrEnum):
    STALL = "stall"
    TEST_TIMEOUT = "test-timeout"
    DEADLOCK = "deadlock"
    QUIT = "quit"
    REQUEST = "request"
    CRASH = "crash"
    UNKNOWN = "unknown"


HANG_TRIGGERS = frozenset({Trigger.STALL, Trigger.TEST_TIMEOUT, Trigger.DEADLOCK, Trigger.QUIT})
"""Triggers that say by themselves that the process hung."""

_HANGTEST_REASON = re.compile(r"# reason: (\S+)")
_TIMEOUT = re.compile(r"panic: test timed out after|Test killed with quit: ran too long")
_DEADLOCK = "fatal error: all goroutines are asleep - deadlock!"
_SIGNAL = re.compile(r"\b(SIG[A-Z0-9]+): ")
_SIGCODE = re.compile(r"\bsigcode=(-?\d+)")
_CRASH = re.compile(
    r"^\s*(?:[0-9][0-9TZ:.+-]*\s+)?"
    r"(?:panic: |fatal error: |Exception 0x|unexpected fault address|\[signal )"
)
"""A crash's first line, at the start of its line (after a log's timestamp at most): a
test's own log line that mentions ``recovered panic: boom`` is not the process crashing."""
_SIGNAL_LINE = re.compile(r"\[signal (0x[0-9a-fA-F]+|SIG[A-Z0-9]+)")
_THREAD_LIMIT = re.compile(r"program exceeds \d+-thread limit")
_EXCEPTION = re.compile(r"Exception (0x[0-9a-fA-F]+)")
_SIGNAL_WORD = re.compile(r"\bsignal (SIG[A-Z0-9]+)\b")


@dataclass(frozen=True, slots=True)
class DumpContext:
    """The trigger and the line that showed it (for the evidence)."""

    trigger: Trigger
    line: str = ""
    crash: str = ""
    """For a crash, what kind: ``panic``, ``fatal-error``, ``exception-0xc0000005``,
    ``SIGSEGV``, ``thread-limit``, ``fault`` (in the signature: ``no-hang:crash:SIGSEGV``)."""

    @property
    def says_hang(self) -> bool:
        return self.trigger in HANG_TRIGGERS


def read_context(dump: GoroutineDump) -> DumpContext:
    """The trigger of ``dump``, strongest first: hangtest's own word, then a timeout, then
    a deadlock, then an external signal, then a crash."""
    for line in dump.preamble:
        m = _HANGTEST_REASON.search(line)
        if m:
            reason = m.group(1)
            trigger = Trigger.STALL if reason == "stall" else Trigger.REQUEST
            return DumpContext(trigger, line)
    around = [*dump.preamble, *dump.trailer]
    for line in around:
        if _TIMEOUT.search(line):
            return DumpContext(Trigger.TEST_TIMEOUT, line)
    for line in dump.preamble:
        if _DEADLOCK in line:
            return DumpContext(Trigger.DEADLOCK, line)
    for line in dump.preamble:
        if _THREAD_LIMIT.search(line):
            return DumpContext(Trigger.CRASH, line, "thread-limit")
    signal = _signal_trigger(dump.preamble)
    if signal is not None:
        return signal
    for line in dump.preamble:
        if _CRASH.search(line):
            return DumpContext(Trigger.CRASH, line, crash_kind(line))
    return DumpContext(Trigger.UNKNOWN)


def crash_kind(line: str) -> str:
    """The kind of crash one preamble line names (see ``DumpContext.crash``)."""
    m = _EXCEPTION.search(line)
    if m:
        return f"exception-{m.group(1).lower()}"
    m = _SIGNAL_LINE.search(line)  # the runtime's "[signal 0xc0000005 code=... pc=...]"
    if m:
        code = m.group(1)
        return f"exception-{code.lower()}" if code.startswith("0x") else code
    m = _SIGNAL_WORD.search(line) or _SIGNAL.search(line)
    if m:
        return m.group(1)
    if "fatal error: " in line:
        return "fatal-error"
    if "panic: " in line:
        return "panic"
    return "fault"


def _signal_trigger(preamble: list[str]) -> DumpContext | None:
    for index, line in enumerate(preamble):
        m = _SIGNAL.search(line)
        if m is None:
            continue
        name = m.group(1)
        if name == "SIGQUIT":
            return DumpContext(Trigger.QUIT, line)
        if name == "SIGABRT" and _sent_by_kill(preamble[index + 1 : index + 3]):
            return DumpContext(Trigger.QUIT, line)
        return DumpContext(Trigger.CRASH, line, name)
    return None


def _sent_by_kill(lines: list[str]) -> bool:
    """``sigcode=0`` is SI_USER: the signal came from kill(2), not from abort(3)."""
    for line in lines:
        m = _SIGCODE.search(line)
        if m:
            return m.group(1) == "0"
    return False
