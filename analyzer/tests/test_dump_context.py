"""Each trigger is read from the text Go (or hangtest) prints around a dump."""

from __future__ import annotations

import pytest
from reprofarm_analyzer.dump_context import Trigger, read_context
from reprofarm_analyzer.goroutines import parse_goroutine_dumps

BODY = "goroutine 1 [chan receive]:\nmain.main()\n\tm.go:3 +0x1d\n"


@pytest.mark.parametrize(
    ("before", "after", "trigger"),
    [
        ("# hangtest goroutine dump\n# reason: stall\n", "", Trigger.STALL),
        ("# hangtest goroutine dump\n# reason: signal\n", "", Trigger.REQUEST),
        (
            "panic: test timed out after 10m0s\nrunning tests:\n\tTestX (10m0s)\n",
            "",
            Trigger.TEST_TIMEOUT,
        ),
        (
            "SIGQUIT: quit\nPC=0x1 m=0 sigcode=0\n",
            "*** Test killed with quit: ran too long (11m0s).\n",
            Trigger.TEST_TIMEOUT,
        ),
        ("fatal error: all goroutines are asleep - deadlock!\n", "", Trigger.DEADLOCK),
        ("SIGQUIT: quit\nPC=0x46cb21 m=0 sigcode=0\n", "", Trigger.QUIT),
        ("SIGABRT: abort\nPC=0x46cb21 m=0 sigcode=0\n", "", Trigger.QUIT),
        ("SIGABRT: abort\nPC=0x46cb21 m=3 sigcode=-6\n", "", Trigger.CRASH),
        (
            "panic: runtime error: invalid memory address or nil pointer dereference\n"
            "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x48f1a5]\n",
            "",
            Trigger.CRASH,
        ),
        ("fatal error: concurrent map writes\n", "", Trigger.CRASH),
        ("Exception 0xc0000005 0x0 0x0 0x7ff6c1a2\nPC=0x7ff6c1a2\n", "", Trigger.CRASH),
        ("", "", Trigger.UNKNOWN),
    ],
)
def test_trigger_is_read_from_preamble_and_trailer(
    before: str, after: str, trigger: Trigger
) -> None:
    (dump,) = parse_goroutine_dumps(before + "\n" + BODY + "\n" + after)
    assert read_context(dump).trigger is trigger


def test_hang_triggers_say_hang_and_others_do_not() -> None:
    says = {t: read_context_for(t).says_hang for t in ("stall", "signal")}
    assert says == {"stall": True, "signal": False}


def read_context_for(reason: str):
    (dump,) = parse_goroutine_dumps(f"# reason: {reason}\n\n{BODY}")
    return read_context(dump)
