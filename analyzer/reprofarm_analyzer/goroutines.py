"""Reading Go goroutine dumps out of any text: a bare dump, a CI log, a journal, an issue.

``parse_goroutine_dumps`` never raises. It returns one ``GoroutineDump`` per traceback in
the text (a log can hold several: one per SIGQUIT, one per test binary) and lists what it
could not read in each dump's ``problems`` instead of guessing.

How it reads:

* A goroutine header can stand anywhere on its line; what stands before it is the line
  prefix of that log (a GitHub Actions timestamp, a journal's ``host prog[pid]:``). The
  prefix is generalised (digits vary) and stripped from the lines that follow.
* A new dump starts when a goroutine id repeats, or when a ``panic:``, ``fatal error:``,
  ``SIGQUIT: quit`` or hangtest header line stands between two goroutines.
* Lines outside goroutine blocks are kept as the dump's preamble or trailer: they are what
  tells a hang from a crash (``dump_context``).
* A dump cut off mid-goroutine keeps what was read; the goroutine is marked ``truncated``.
* Pasted by hand: a note after a header or frame (``<- stuck here``) or a mark before a
  frame (``--> main.f(...)``) is set aside, a line of dots (``...``, ``(...)``) marks frames
  left out, a blank line after a header or inside a goroutine is closed up (Go prints
  neither), frames before the first header (a cut top) become a goroutine without header
  (``headerless``). Each is a line in ``problems``.
"""

from __future__ import annotations

import re

from reprofarm_analyzer import traceback_lines as tl
from reprofarm_analyzer.goroutine_model import Frame, Goroutine, GoroutineDump

UNKNOWN_STATE = "unknown"
"""The state of a goroutine whose header was cut off."""

MAX_PROBLEMS = 20
"""Per dump: a broken paste can fail on every line, and one example of each is enough."""

_KEEP_AROUND = 40
"""Preamble and trailer lines kept per dump: the markers sit right next to the dump."""

_MAX_WRAPPED = 8
"""Continuation lines joined back onto a frame whose arguments a terminal wrapped."""

_MARKERS_KEPT = 4
"""Trigger lines (``panic:``, ``Exception 0x...``) kept from before the preamble's window:
a register dump and a runtime stack can push a crash's first line 60 lines up."""

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ][\d:.,]+Z?\s+")
"""A CI log's timestamp, stripped from frames before any header taught the parser a prefix."""

_RUNTIME_STACK = "runtime stack:"
"""The system stack printed after a fatal error: frames without a goroutine of their own."""


def parse_goroutine_dumps(text: str) -> list[GoroutineDump]:
    """Every goroutine dump in ``text``, in order. An empty list if there is none."""
    return _Parser().run(text)


def count_headers(text: str) -> int:
    """How many lines hold a goroutine header: each one becomes exactly one goroutine."""
    return sum(
        1
        for line in text.split("\n")
        if "goroutine " in line and tl.HEADER.search(line.rstrip()) is not None
    )


class _Parser:
    """One pass over the lines; the state is the dump and goroutine being filled."""

    def __init__(self) -> None:
        self.dumps: list[GoroutineDump] = []
        self.dump: GoroutineDump | None = None
        self.current: Goroutine | None = None
        self.seen: set[int] = set()
        self.gap: list[str] = []
        self.prefix: re.Pattern[str] | None = None
        self.last_kind = ""
        self.wrapped: list[str] = []
        self.fragment = ""  # the first part of a source line wrapped onto the next
        self.reopenable: Goroutine | None = None  # ended by a blank line (Go prints none)
        self.awaiting_creator_file = False
        self.orphan_problem = ""

    def run(self, text: str) -> list[GoroutineDump]:
        # The hot loop. A token is a whole frame, a whole created-by pair or one line.
        # Inside a goroutine, in a log without line prefixes, a frame is taken in one step;
        # anything else goes line by line, the same way the frame would have gone.
        number = 0
        for token in tl.TOKEN.finditer(text):
            line = token.group("line")
            if line is not None:
                number += 1
                if line == "\n" and self.prefix is None:
                    self._end_block()  # the blank line after each goroutine
                else:
                    self._line(number, line.removesuffix("\n").rstrip())
                continue
            if not self._whole(token):
                first, second = token.group(0).split("\n")[:2]
                self._line(number + 1, first.rstrip())
                self._line(number + 2, second.rstrip())
            number += 2
        if not text or text.endswith("\n"):
            # str.split would give a last, empty line here: it ends an open goroutine.
            self._line(number + 1, "")
        self._finish()
        return self.dumps

    def _whole(self, token: re.Match[str]) -> bool:
        """Take a frame or a created-by pair in one step; False: read it line by line."""
        goroutine = self.current
        if goroutine is None or self.prefix is not None or self.wrapped:
            return False
        function = token.group("function")
        if function is not None:
            if not tl.plain_function(function):
                return False
            goroutine.frames.append(
                Frame(function, token.group("file"), int(token.group("number")))
            )
            self.last_kind = "file"
        else:
            parent = token.group("parent")
            goroutine.created_by = token.group("creator")
            goroutine.created_in = int(parent) if parent else None
            self.last_kind = "creator-file"
        self.awaiting_creator_file = False
        return True

    def _line(self, number: int, raw: str) -> None:
        if "goroutine " in raw:
            header = tl.HEADER.search(raw)
            if header is not None:
                self._header(number, raw, header)
                return
        line = raw
        if self.prefix is not None:
            m = self.prefix.match(raw)
            if m is not None:
                line = raw[m.end() :]
        if self.current is None:
            self._gap_line(number, line)
        else:
            self._block_line(number, line)

    # -- per line -----------------------------------------------------------------------

    def _header(self, number: int, raw: str, header: re.Match[str]) -> None:
        self._end_block()
        self.reopenable = None
        self.prefix = tl.prefix_pattern(raw[: header.start()])
        facts = tl.header_facts(header)
        if self.dump is None or facts.id in self.seen or self._gap_starts_dump():
            self._start_dump(number)
        else:
            self.gap.clear()
        assert self.dump is not None
        note = header.group(3)
        if note:
            self._problem(
                number, f"note after goroutine {facts.id}'s header set aside: {note[:60]!r}"
            )
        goroutine = Goroutine(
            id=facts.id,
            state=facts.state,
            wait_minutes=facts.wait_minutes,
            locked=facts.locked,
            line=number,
        )
        self.dump.goroutines.append(goroutine)
        self.seen.add(facts.id)
        self.current = goroutine
        self.last_kind = "header"

    def _gap_line(self, number: int, line: str) -> None:
        stripped = line.strip()
        reopened = self.reopenable
        if reopened is not None and stripped and not self.gap:
            self.reopenable = None
            if tl.noted_function(stripped) is not None:
                # Go never prints a frame right after a blank line: a paste split the
                # goroutine (an editor, a terminal, a person who wrote under the header).
                # The frames stay with it.
                where = "inside goroutine" if reopened.frames else "after the header of goroutine"
                self._problem(number, f"blank line {where} {reopened.id}: joined")
                self.current = reopened
                self.last_kind = "file" if reopened.frames else "header"
                self._block_line(number, line)
                return
        if tl.PARTIAL_HEADER.match(stripped):
            self._problem(number, f"unreadable goroutine header: {stripped[:80]!r}")
        if stripped:
            self.gap.append(stripped)
            if len(self.gap) > 50 * _KEEP_AROUND:
                # A CI log can hold megabytes between dumps; only its ends matter.
                del self.gap[_KEEP_AROUND : -10 * _KEEP_AROUND]

    def _block_line(self, number: int, line: str) -> None:
        goroutine = self.current
        assert goroutine is not None
        stripped = line.strip()
        if not stripped:
            self._end_block()
            return
        if self.wrapped:
            self._continue_wrapped(number, goroutine, stripped)
            return
        if self.fragment:
            fragment, self.fragment = self.fragment, ""
            joined = tl.file_position(fragment + stripped)
            if joined is not None:
                self._problem(
                    number, f"source line wrapped onto two lines, joined: {fragment[-40:]!r}"
                )
                self._file_line(number, goroutine, joined, fragment + stripped)
                return
            self._problem(number - 1, f"not a traceback line: {fragment[:80]!r}")
        position = tl.file_position(stripped) if stripped[-1].isalnum() else None
        if position is not None:
            self._file_line(number, goroutine, position, stripped)
            return
        name = tl.function_name(stripped)
        if name is not None:
            goroutine.frames.append(Frame(name))
            self.last_kind = "func"
            self.awaiting_creator_file = False
            return
        self._other_block_line(number, goroutine, stripped)

    def _file_line(
        self, number: int, goroutine: Goroutine, position: tuple[str, int], line: str
    ) -> None:
        if self.awaiting_creator_file:
            self.awaiting_creator_file = False
            self.last_kind = "creator-file"
            return
        if self.last_kind == "func" and goroutine.frames:
            last = goroutine.frames[-1]
            goroutine.frames[-1] = Frame(last.function, position[0], position[1])
            self.last_kind = "file"
            return
        self._problem(number, f"source line with no function before it: {line[:80]!r}")
        self.last_kind = "other"

    def _other_block_line(self, number: int, goroutine: Goroutine, line: str) -> None:
        creator = tl.created_by(line)
        if creator is not None:
            goroutine.created_by, goroutine.created_in = creator
            self.awaiting_creator_file = True
            self.last_kind = "creator"
        elif tl.is_elided(line):
            goroutine.elided = True
            self.last_kind = "elided"
        elif line == tl.STACK_UNAVAILABLE:
            goroutine.stack_unavailable = True
            self.last_kind = "unavailable"
        elif tl.is_register(line):
            self.last_kind = "register"
        elif tl.DUMP_START.search(line) or tl.GO_TEST_TRAILER.match(line):
            # A signal preamble right after a register dump, or what `go test` prints
            # after a dump (exit status 2, FAIL pkg 600s): the block is over.
            self._end_block()
            self.gap.append(line)
        elif tl.is_hand_elided(line):
            goroutine.elided = True
            self.last_kind = "elided"
            self._problem(
                number, f"frames of goroutine {goroutine.id} left out by hand: {line[:40]!r}"
            )
        elif (marked := tl.split_marker(line)) is not None and tl.noted_function(
            marked[0]
        ) is not None:
            self._problem(number, f"mark before a frame set aside: {marked[1][:20]!r}")
            self._block_line(number, marked[0])
        elif (noted := tl.split_annotation(line)) is not None:
            self._problem(number, f"note after a frame set aside: {noted[1][:60]!r}")
            self._block_line(number, noted[0])
        elif tl.unfinished_call(line):
            self.wrapped = [line]
        elif self.last_kind in ("func", "creator") and tl.path_fragment(line):
            self.fragment = line  # judged with the next line
        else:
            self._problem(number, f"not a traceback line: {line[:80]!r}")
            self.last_kind = "other"

    def _continue_wrapped(self, number: int, goroutine: Goroutine, line: str) -> None:
        self.wrapped.append(line)
        joined = " ".join(self.wrapped)
        name = tl.function_name(joined)
        if name is not None:
            goroutine.frames.append(Frame(name))
            self.wrapped = []
            self.last_kind = "func"
        elif len(self.wrapped) > _MAX_WRAPPED:
            self._problem(number, f"unfinished call never closed: {self.wrapped[0][:80]!r}")
            self.wrapped = []
            self.last_kind = "other"

    # -- dumps --------------------------------------------------------------------------

    def _gap_starts_dump(self) -> bool:
        return any(tl.DUMP_START.search(line) for line in self.gap)

    def _start_dump(self, number: int) -> None:
        start = next(
            (i for i, line in enumerate(self.gap) if tl.DUMP_START.search(line)),
            None,
        )
        orphans: list[Goroutine] = []
        if self.dump is None:
            preamble = self.gap
            orphans = self._orphan_lines(preamble)
        else:
            cut = len(self.gap) if start is None else start
            self.dump.trailer.extend(self.gap[:cut][:_KEEP_AROUND])
            preamble = self.gap[cut:]
        markers = [line for line in preamble[:-_KEEP_AROUND] if tl.DUMP_START.search(line)]
        self.dump = GoroutineDump(
            goroutines=orphans,
            preamble=[*markers[-_MARKERS_KEPT:], *preamble[-_KEEP_AROUND:]],
            first_line=number,
        )
        self.dumps.append(self.dump)
        self.seen = set()
        self.gap = []

    def _orphan_lines(self, lines: list[str]) -> list[Goroutine]:
        """Frames before the first header: the text starts in the middle of a goroutine
        (or holds no header at all). They become goroutines without header."""
        orphans = _headerless(lines, self.prefix)
        cut = [g for g in orphans if g.state == UNKNOWN_STATE]
        if cut:
            frames = sum(len(g.frames) for g in cut)
            self.orphan_problem = (
                f"{frames} frames before the first goroutine header (the text starts in"
                f" the middle of a goroutine): read as {len(cut)} goroutine(s) whose"
                " id and state are unknown"
            )
        return orphans

    def _end_block(self) -> None:
        self._salvage_wrapped()
        self.fragment = ""
        if self.current is not None and self.last_kind in ("file", "header"):
            self.reopenable = self.current
        self.current = None
        self.awaiting_creator_file = False

    def _finish(self) -> None:
        goroutine = self.current
        if goroutine is not None and (
            self.wrapped or self.last_kind in ("header", "func", "other", "creator")
        ):
            goroutine.truncated = True
            if self.dump is not None:
                self.dump.problems.append(
                    f"the text ends inside goroutine {goroutine.id}: the dump was cut"
                )
        self._salvage_wrapped()
        if self.dump is not None:
            self.dump.trailer.extend(self.gap[:_KEEP_AROUND])
        elif any(tl.function_name(line) is not None for line in self.gap):
            # (the runtime stack of a fatal error without goroutines is one such text)
            # No header anywhere: a stack pasted without its header is still a dump.
            orphans = self._orphan_lines(self.gap)
            if orphans:
                self.dumps.append(
                    GoroutineDump(goroutines=orphans, preamble=self.gap[-_KEEP_AROUND:])
                )
        if self.orphan_problem and self.dumps:
            self.dumps[0].problems.insert(0, self.orphan_problem)

    def _salvage_wrapped(self) -> None:
        """A call cut inside its argument list still has its whole function name."""
        if self.current is not None and self.wrapped:
            first = self.wrapped[0]
            self.current.frames.append(Frame(first[: tl.call_paren(first)]))
        self.wrapped = []

    def _problem(self, number: int, what: str) -> None:
        dump = self.dump
        if dump is None:
            return
        if len(dump.problems) < MAX_PROBLEMS:
            dump.problems.append(f"line {number}: {what}")
        elif len(dump.problems) == MAX_PROBLEMS:
            dump.problems.append("more unreadable lines follow (not listed)")


def _headerless(lines: list[str], prefix: re.Pattern[str] | None) -> list[Goroutine]:
    """Runs of frames (a function line over its source line) in the lines before the first
    header, one goroutine per run. A ``runtime stack:`` block (the system stack after a
    fatal error) becomes one too, in state ``running``: the thread that threw; so do
    frames after a crash's first lines (``Exception 0xc0000005`` on Windows prints the
    faulting goroutine's frames without a header)."""
    found: list[Goroutine] = []
    current: Goroutine | None = None
    function: str | None = None
    system_stack = False
    after_crash = False  # Windows prints the faulting goroutine's frames with no header
    for raw in lines:
        line = _unprefixed(raw, prefix)
        if tl.DUMP_START.search(line):
            after_crash = True
        marked = tl.split_marker(line)
        if marked is not None and tl.noted_function(marked[0]) is not None:
            line = marked[0]
        noted = tl.split_annotation(line)
        if noted is not None and tl.function_name(line) is None:
            line = noted[0]
        name = tl.function_name(line)
        position = tl.file_position(line) if name is None else None
        if name is not None:
            function = name
            continue
        if position is not None and function is not None:
            if current is None:
                # The system stack is the thread that threw, and frames right after a
                # crash's first lines are the faulting goroutine: running, never stuck.
                state = "running" if system_stack or after_crash else UNKNOWN_STATE
                current = Goroutine(id=-(len(found) + 1), state=state, headerless=True)
                found.append(current)
            current.frames.append(Frame(function, position[0], position[1]))
            function = None
            continue
        creator = tl.created_by(line)
        if creator is not None and current is not None:
            current.created_by, current.created_in = creator
            continue
        if position is not None or tl.is_elided(line) or tl.is_hand_elided(line):
            continue  # a created-by's source line, or frames left out
        # Any other line ends a run of frames.
        current = None
        function = None
        system_stack = line == _RUNTIME_STACK
    return found


def _unprefixed(line: str, prefix: re.Pattern[str] | None) -> str:
    if prefix is not None:
        m = prefix.match(line)
        if m is not None:
            return line[m.end() :].strip()
    m = _TIMESTAMP.match(line)
    return line[m.end() :] if m is not None else line
