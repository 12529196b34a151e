"""Recognising the lines of a Go traceback, one line at a time.

The forms come from the runtime's printers (``src/runtime/traceback.go``:
``goroutineheader``, ``printFuncName``/``traceback1``, ``printcreatedby``) as Go 1.17 to
1.27 write them:

* ``goroutine 7 [syscall, 9 minutes, locked to thread]:`` and, since Go 1.23 for a crashing
  goroutine or GOTRACEBACK=system, ``goroutine 1 gp=0xc000002380 m=0 mp=0x5a3c60 [running]:``
  (``m=nil`` and no ``mp=`` for a goroutine not on an M); Go 1.27 adds pprof labels after
  the bracket, ``goroutine 9 [select] {worker: 3}:``;
* a frame: ``pkg.fn(args)`` then ``\\tfile.go:123 +0x1d`` (``fp= sp= pc=`` follow with
  GOTRACEBACK=system; inlined frames have no offset);
* ``created by pkg.fn in goroutine 5`` (Go 1.21+) or ``created by pkg.fn``;
* ``...additional frames elided...`` and ``...N frames elided...`` (Go 1.21+);
* ``goroutine running on other thread; stack unavailable``;
* register dumps after a signal (``rax    0x0``, ``pc     0x1234``).

Everything here is pure string work with precompiled patterns: the parser calls these once
per line of dumps that can be tens of megabytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADER = re.compile(
    r"goroutine (\d{1,20})(?: gp=0x[0-9a-fA-F]{1,16})?(?: m=(?:\d+|nil))?(?: mp=0x[0-9a-fA-F]+)?"
    r" \[([^\]\n]{0,200})\](?: \{[^}\n]{0,200}\})?:(?:[ \t]+(\S.*?))?\s*$"
)
"""Found with ``search`` so that whatever stands before it on the line is the line prefix.
Group 3 is a note a person wrote after the colon (``goroutine 7 [chan receive]:  <- here``)."""

SOURCE_LINE = re.compile(
    r"\s*(\S.*?):(\d+)(?: \+0x[0-9a-fA-F]+)?"
    r"(?: fp=0x[0-9a-fA-F]+ sp=0x[0-9a-fA-F]+(?: pc=0x[0-9a-fA-F]+)?)?\s*$"
)
_SOURCE_TAIL = (
    r"[ \t]*(?P<file>\S[^\n]*?):(?P<number>\d+)(?: \+0x[0-9a-fA-F]+)?"
    r"(?: fp=0x[0-9a-fA-F]+ sp=0x[0-9a-fA-F]+(?: pc=0x[0-9a-fA-F]+)?)?[ \t\r]*(?:\n|\Z)"
)
TOKEN = re.compile(
    r"(?P<function>[^\n]*)\([^(\n]*\)[ \t\r]*\n" + _SOURCE_TAIL + r"|"
    r"created by (?P<creator>\S+)(?: in goroutine (?P<parent>\d+))?[ \t\r]*\n"
    + _SOURCE_TAIL.replace("?P<file>", "?:").replace("?P<number>", "?:")
    + r"|(?P<line>[^\n]+\Z|[^\n]*\n)"
)
"""The parser's tokens: a whole frame (function line and source line, the bulk of any
dump), a whole ``created by`` pair, or else one line. Matching these in C rather than line
by line in Python is what keeps a 10 MB dump well under a second. The function is what
precedes the line's last ``(``, exactly as ``function_name`` reads it."""

_CREATED = re.compile(r"created by (\S+)(?: in goroutine (\d+))?$")
_ELIDED = re.compile(r"\.\.\.(?:additional|\d+) frames elided\.\.\.$")
_REGISTER = re.compile(r"[a-z][a-z0-9]{0,7}\s+0x[0-9a-fA-F]+$")
_MINUTES = re.compile(r"(\d+) minutes?$")
_DIGITS = re.compile(r"(\d+)")
_STATE_FLAGS = (" (scan)", " (leaked)")
_ANNOTATION = re.compile(r"^(.*?\S)[ \t]+(?:<-+|<=+|←|-+>|=+>|//|#|\*{3}|!{2,}).*$")
"""A note after a frame or source line: ``main.f(...)   <- blocked here``."""
_MARKER = re.compile(r"^(?:-+>|=+>|>+|→|➜|⇒|\*+|<-+|<=+)[ \t]*(?=\S)")
"""A mark a person put before a frame to point at it: ``--> main.f(...)``, ``>>> main.f(...)``,
``* main.f(...)``. Go never starts a frame with any of these."""
_HAND_ELIDED = re.compile(r"^[\[(]?(?:\.{3,}|…)[\])]?(?:\s.*)?$")
"""Frames a person left out: ``...``, ``(...)``, ``[...]``, ``… 12 more frames``."""

PARTIAL_HEADER = re.compile(r"goroutine \d+(?: |$)")
"""The start of a header that did not survive: a cut or a broken paste."""

STACK_UNAVAILABLE = "goroutine running on other thread; stack unavailable"

GO_TEST_TRAILER = re.compile(
    r"\s*(?:exit status \d+|FAIL\t|FAIL$|ok  \t|ok\s+\S+\s+\d|--- (?:FAIL|PASS|SKIP):|"
    r"=== (?:RUN|PAUSE|CONT|NAME)\s|PASS$)"
)
"""What `go test` prints around a test's output: after the dump of a timed-out test it
ends the dump (a trailer, not a broken traceback line)."""

DUMP_START = re.compile(
    r"(?:^|\s)(?:panic: |fatal error: |SIG[A-Z0-9]+: |Exception 0x[0-9a-fA-F]+ |"
    r"unexpected fault address|# hangtest goroutine dump)"
)
"""A line that begins a new traceback: a panic, a fatal error, a signal, hangtest's header."""


@dataclass(frozen=True, slots=True)
class HeaderFacts:
    """What a goroutine header says."""

    id: int
    state: str
    wait_minutes: int | None
    locked: bool


def parse_state(bracket: str) -> tuple[str, int | None, bool]:
    """Split ``syscall, 9 minutes, locked to thread`` into state, minutes and locked.

    The state keeps what Go puts in the wait reason (``chan receive (nil chan)``) but not
    `` (scan)`` (the GC was looking at the stack at that moment) nor Go 1.27's `` (leaked)``
    (the GC proved the wait can never end), so they do not split a group of identical
    stacks.
    """
    parts = [p.strip() for p in bracket.split(",")]
    state = parts[0]
    for flag in _STATE_FLAGS:
        state = state.removesuffix(flag)
    minutes: int | None = None
    locked = False
    for part in parts[1:]:
        m = _MINUTES.match(part)
        if m:
            minutes = int(m.group(1))
        elif part == "locked to thread":
            locked = True
    return state, minutes, locked


def header_facts(match: re.Match[str]) -> HeaderFacts:
    state, minutes, locked = parse_state(match.group(2))
    return HeaderFacts(int(match.group(1)), state, minutes, locked)


def file_position(line: str) -> tuple[str, int] | None:
    """``\\t/go/src/os/file.go:118 +0xad`` -> (path, 118); None if not a source line."""
    m = SOURCE_LINE.match(line)
    if m is None:
        return None
    return m.group(1), int(m.group(2))


def plain_function(name: str) -> bool:
    """A function name as Go prints it: not empty, no blanks, no leading punctuation."""
    return (
        bool(name)
        and " " not in name
        and "\t" not in name
        and not name.startswith(("(", "[", "#", "-", "*", "=", ">"))
    )


def function_name(line: str) -> str | None:
    """``internal/poll.(*FD).Close(0xc000...)`` -> ``internal/poll.(*FD).Close``.

    Arguments never hold parentheses (hex words, ``...``, ``{...}``, ``?``), so the call's
    own parenthesis is the last ``(`` on the line. Function names hold no spaces.
    """
    if not line.endswith(")"):
        return None
    cut = line.rfind("(")
    if cut <= 0:
        return None
    name = line[:cut]
    return name if plain_function(name) else None


def call_paren(line: str) -> int:
    """Where the argument list opens: the first ``(`` that is not a pointer receiver's
    ``(*T)`` (Go prints value receivers without parentheses). -1 if there is none."""
    at = line.find("(")
    while at >= 0 and line.startswith("(*", at):
        at = line.find("(", at + 1)
    return at


def unfinished_call(line: str) -> bool:
    """A frame whose argument list a terminal or a paste wrapped onto the next lines."""
    cut = call_paren(line)
    return (
        cut > 0
        and not line.endswith(")")
        and " " not in line[:cut]
        and "\t" not in line[:cut]
        and "." in line[:cut]
    )


def created_by(line: str) -> tuple[str, int | None] | None:
    m = _CREATED.match(line)
    if m is None:
        return None
    parent = m.group(2)
    return m.group(1), int(parent) if parent else None


def is_elided(line: str) -> bool:
    return _ELIDED.match(line) is not None


def split_annotation(line: str) -> tuple[str, str] | None:
    """``main.f(0x1)  <- stuck`` -> (``main.f(0x1)``, ``<- stuck``); None without a note."""
    m = _ANNOTATION.match(line)
    if m is None:
        return None
    return m.group(1), line[m.end(1) :].strip()


def split_marker(line: str) -> tuple[str, str] | None:
    """``-->  main.f(0x1)`` -> (``main.f(0x1)``, ``-->``); None without a mark before it."""
    m = _MARKER.match(line)
    if m is None:
        return None
    return line[m.end() :], line[: m.end()].strip()


def noted_function(line: str) -> str | None:
    """The function of a frame line a person marked (``--> main.f(0x1)``) or annotated
    (``main.f(0x1)  <- here``), or of a plain one; None if the line is no frame."""
    marked = split_marker(line)
    if marked is not None:
        line = marked[0]
    name = function_name(line)
    if name is None and (noted := split_annotation(line)) is not None:
        name = function_name(noted[0])
    return name


def path_fragment(line: str) -> bool:
    """The first part of a source path a terminal wrapped (``/src/net/connection.``)."""
    return " " not in line and "(" not in line and ("/" in line or "\\" in line)


def is_hand_elided(line: str) -> bool:
    """A line standing for frames a person left out (not Go's own elision line)."""
    return _HAND_ELIDED.match(line) is not None


def is_register(line: str) -> bool:
    return _REGISTER.match(line) is not None


def prefix_pattern(prefix: str) -> re.Pattern[str] | None:
    """A pattern for the prefix a CI log or journal puts before every line.

    Digits vary from line to line (timestamps, line numbers), the rest does not, so each
    run of digits becomes ``\\d+`` and everything else must match literally: the header
    ``2024-01-02T03:04:05.1234567Z goroutine 7 [...]`` gives a pattern that also strips
    ``2024-01-02T03:04:05.1234999Z \\tfile.go:12``.
    """
    if not prefix:
        return None
    core = prefix.rstrip()
    tail = prefix[len(core) :]
    if not core:
        return re.compile(re.escape(tail))
    # re.compile caches by pattern text, and every timestamp generalises to the same text.
    pattern = "".join(
        r"\d+" if piece.isdigit() else re.escape(piece) for piece in _DIGITS.split(core) if piece
    )
    # A log line that is empty after its prefix loses the prefix's trailing blank to rstrip.
    return re.compile(pattern + (f"[ \t]{{0,{len(tail)}}}" if tail else ""))
