"""Property tests: the parser and the classifier never raise, whatever the text, and the
parser reads back exactly the goroutines a dump holds."""

from __future__ import annotations

import html
import json
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from reprofarm_analyzer.analysis import analyze_goroutine_dumps, analyze_goroutines
from reprofarm_analyzer.errors import NotADumpError
from reprofarm_analyzer.goroutines import count_headers, parse_goroutine_dumps
from reprofarm_analyzer.pasted import unwrap
from reprofarm_analyzer.traceback_lines import HEADER

CORPUS = sorted((Path(__file__).parent / "corpus" / "goroutines").glob("*.txt"))
TEXTS = [p.read_text() for p in CORPUS]

names = st.from_regex(
    r"[a-z][a-z0-9/]{0,12}\.(\(\*[A-Z][a-z]{0,5}\)\.)?[A-Za-z][a-z0-9]{0,8}", fullmatch=True
)
states = st.sampled_from(
    [
        "running",
        "runnable",
        "syscall",
        "semacquire",
        "chan receive",
        "IO wait",
        "select",
        "sync.Mutex.Lock",
        "chan receive (nil chan)",
        "GC worker (idle)",
    ]
)
goroutine_specs = st.lists(
    st.tuples(
        states, st.none() | st.integers(1, 10_000), st.booleans(), st.lists(names, max_size=6)
    ),
    min_size=1,
    max_size=8,
)


def render(specs: list[tuple[str, int | None, bool, list[str]]]) -> str:
    blocks = []
    for gid, (state, minutes, locked, functions) in enumerate(specs, start=1):
        extra = (f", {minutes} minutes" if minutes else "") + (
            ", locked to thread" if locked else ""
        )
        lines = [f"goroutine {gid} [{state}{extra}]:"]
        for n, f in enumerate(functions):
            lines += [f"{f}(0x{n:x}, {{0xc000{n:x}?, 0x1}})", f"\t/src/x/{n}.go:{n + 1} +0x{n:x}"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


@given(goroutine_specs)
def test_parse_reads_back_rendered_goroutines(specs) -> None:
    (dump,) = parse_goroutine_dumps(render(specs))
    got = [(g.state, g.wait_minutes, g.locked, list(g.functions)) for g in dump.goroutines]
    assert got == [(s, m, lk, fs) for s, m, lk, fs in specs]
    assert dump.problems == []


def headed(dumps: list) -> int:
    """Goroutines read from a header (frames before the first header become goroutines
    without one, on top of these)."""
    return sum(1 for d in dumps for g in d.goroutines if not g.headerless)


def analyze_or_refuse(text: str) -> None:
    """The one behaviour for any text: an analysis, or NotADumpError when the text holds
    no goroutine at all (never a ``no-hang`` for text that is not a dump)."""
    try:
        analysis = analyze_goroutines(text)
    except NotADumpError:
        assert analyze_goroutine_dumps(text) == []
        return
    assert analysis.goroutines
    assert analysis.signature.startswith(analysis.label.value)


@given(st.text())
def test_any_text_parses_without_raising(text: str) -> None:
    dumps = parse_goroutine_dumps(text)
    assert headed(dumps) == count_headers(text)
    analyze_or_refuse(text)


@given(st.binary())
def test_any_bytes_decoded_analyse_without_raising(data: bytes) -> None:
    analyze_or_refuse(data.decode("utf-8", errors="replace"))


notes = st.sampled_from(["<- stuck here", "// blocked", "<-- HERE", "# the reader", "--> why?"])
marks = st.sampled_from(["--> ", "->", ">>> ", "=> ", "* ", "→ ", "> "])
"""What a person puts before a frame to point at it."""


@st.composite
def mutated_dumps(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(TEXTS)).split("\n")
    for _ in range(draw(st.integers(1, 6))):
        op = draw(
            st.sampled_from(
                [
                    "cut",
                    "cut-top",
                    "blank",
                    "note",
                    "drop",
                    "dup",
                    "insert",
                    "crlf",
                    "prefix",
                    "garble",
                    "mark",
                    "br",
                ]
            )
        )
        at = draw(st.integers(0, max(len(lines) - 1, 0)))
        if op == "cut":
            lines = lines[:at]
        elif op == "cut-top":  # a page or log that lost its top
            lines = lines[at:]
        elif op == "blank":  # an editor's blank line inside a goroutine
            lines.insert(at, "")
        elif op == "note" and lines:
            lines[at] += "   " + draw(notes)
        elif op == "drop":
            del lines[at : at + draw(st.integers(1, 5))]
        elif op == "dup":
            lines[at:at] = lines[at : at + draw(st.integers(1, 20))]
        elif op == "insert":
            lines.insert(at, draw(st.text(max_size=80)))
        elif op == "crlf":
            lines = [line + "\r" for line in lines]
        elif op == "mark" and lines:  # a person points at a line
            lines[at] = draw(marks) + lines[at]
        elif op == "br" and lines:  # a page joined this line and the next with <br>
            lines[at : at + 2] = [
                draw(st.sampled_from(["<br>", " <br/> "])).join(lines[at : at + 2])
            ]
        elif op == "prefix":
            stamp = draw(st.from_regex(r"[0-9T:.\- Z]{0,30}", fullmatch=True))
            lines = [stamp + line for line in lines]
        elif lines:
            line = lines[at]
            cut = draw(st.integers(0, len(line)))
            lines[at] = line[:cut] + draw(st.text(max_size=10)) + line[cut:]
    return "\n".join(lines)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_dumps())
def test_mutated_real_dumps_analyse_without_raising(text: str) -> None:
    dumps = parse_goroutine_dumps(text)
    assert headed(dumps) == count_headers(text)
    analyze_or_refuse(text)


def goroutine_facts(text: str) -> list[tuple]:
    # Without any header no prefix is learnt, so frames alone are compared with headers.
    return [
        (g.id, g.state, g.wait_minutes, g.locked, g.frames, g.created_by, g.elided, g.truncated)
        for d in parse_goroutine_dumps(text)
        for g in d.goroutines
        if not g.headerless
    ]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_dumps())
def test_whole_frame_tokens_read_like_line_by_line(text: str) -> None:
    """A log prefix forces the line-by-line path; without one, frames are read as whole
    tokens. Both must read the same goroutines."""
    lines = text.split("\n")
    headers = [HEADER.search(line.rstrip()) for line in lines if "goroutine " in line]
    assume(all(h is None or h.start() == 0 for h in headers))  # one prefix, not two
    prefixed = "\n".join("ci| " + line for line in lines)
    assert goroutine_facts(prefixed) == goroutine_facts(text)


@st.composite
def pasted(draw: st.DrawFn) -> tuple[list[tuple[str, int | None, bool, list[str]]], str]:
    """A rendered dump, then what a person does to it before pasting: notes after headers
    and frames, marks before frames, a blank line under a header, indentation by hand, and
    one of the wrappings (HTML source, a page's <br> lines, test2json)."""
    specs = draw(goroutine_specs)
    lines = []
    for line in render(specs).split("\n"):
        header = line.startswith("goroutine ")
        if header and draw(st.booleans()):
            line += "   " + draw(notes)
        elif line.startswith("\t") and draw(st.booleans()):
            line = " " * draw(st.integers(2, 8)) + line.strip() + "  " + draw(notes)
        elif line and not header and not line.startswith("\t"):
            how = draw(st.sampled_from(["none", "indent", "mark"]))
            if how == "indent":
                line = " " * draw(st.integers(1, 4)) + line
            elif how == "mark":
                line = draw(marks) + line
        lines.append(line)
        if header and draw(st.integers(0, 3)) == 0:
            lines.append("")  # a blank line between the header and its frames
    text = "\n".join(lines)
    wrap = draw(st.sampled_from(["none", "html", "html-br", "test2json"]))
    if wrap == "html":
        text = "<pre>" + html.escape(text) + "</pre>"
    elif wrap == "html-br":  # a page that breaks lines with <br> (with or without a newline)
        breaks = st.sampled_from(["<br>", "<br/>", "<br />\n", "<BR>", " <br>\n"])
        escaped = [html.escape(line) for line in text.split("\n")]
        text = "<div>" + "".join(line + draw(breaks) for line in escaped) + "</div>"
    elif wrap == "test2json":
        cut = draw(st.integers(1, 40))
        pieces = [text[i : i + cut] for i in range(0, len(text), cut)]
        text = "\n".join(json.dumps({"Action": "output", "Output": p}) for p in pieces)
    return specs, text


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(pasted())
def test_pasted_dumps_read_back_the_rendered_goroutines(case) -> None:
    specs, text = case
    assume(any(functions for *_, functions in specs))  # no frame at all: prose, refused
    analyses = analyze_goroutine_dumps(text)
    assert len(analyses) == 1
    assert analyses[0].goroutines == len(specs)
    (dump,) = parse_goroutine_dumps(unwrap(text).text)
    got = [(g.state, g.wait_minutes, g.locked, list(g.functions)) for g in dump.goroutines]
    assert got == [(s, m, lk, fs) for s, m, lk, fs in specs]


@st.composite
def interleaved_packages(draw: st.DrawFn) -> tuple[list[int], str]:
    """``go test -json ./...``: two packages' dumps, each cut into Output fields anywhere,
    their events interleaved in any order (each package's own order kept)."""
    specs = [draw(goroutine_specs), draw(goroutine_specs)]
    queues = []
    for one in specs:
        text = render(one)
        cut = draw(st.integers(1, 60))
        queues.append([text[i : i + cut] for i in range(0, len(text), cut)])
    events = []
    spoke: list[int] = []  # packages in the order they first speak: the parts' order
    while any(queues):
        index = draw(st.sampled_from([i for i, q in enumerate(queues) if q]))
        output = queues[index].pop(0)
        events.append({"Action": "output", "Package": f"example.com/p{index}", "Output": output})
        if index not in spoke:
            spoke.append(index)
    return [len(specs[i]) for i in spoke], "\n".join(json.dumps(e) for e in events) + "\n"


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(interleaved_packages())
def test_interleaved_packages_dumps_never_merge(case) -> None:
    counts, text = case
    analyses = analyze_goroutine_dumps(text)
    unwrapped = unwrap(text)
    assert len(unwrapped.parts) == 2
    read = [d for part in unwrapped.parts for d in parse_goroutine_dumps(part)]
    assert [sum(1 for _ in d.goroutines) for d in read] == counts
    assert len(analyses) == sum(1 for d in read if any(g.frames for g in d.goroutines))
