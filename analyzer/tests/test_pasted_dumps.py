"""A tolerant reader, strict verdicts: dumps as people paste them (annotated, indented,
elided, cut, HTML-escaped, inside `go test -json`), crashes that are not hangs, and text
that is no dump at all. The stacks are written inline in Go's format; real pasted dumps are
in corpus/goroutines (test_corpus.py)."""

from __future__ import annotations

import html
import json

import pytest
from reprofarm_analyzer.analysis import (
    analyze_bytes,
    analyze_goroutine_dumps,
    analyze_goroutines,
    detect_kind,
)
from reprofarm_analyzer.errors import NotADumpError
from reprofarm_analyzer.goroutines import parse_goroutine_dumps
from reprofarm_analyzer.pasted import unwrap
from reprofarm_protocol.analysis import Confidence, DumpKind, Label

TIMEOUT = "panic: test timed out after 10m0s\n\n"

CANCELLER = """goroutine 21 [syscall, 9 minutes]:
syscall.SyscallN(0x7ffa1c2d3e40?, {0xc000123a08?, 0x2?, 0x0?})
\t/go/src/runtime/syscall_windows.go:519 +0x7e
syscall.CancelIoEx(0x1a4, 0x0)
\t/go/src/syscall/zsyscall_windows.go:459 +0x5b
internal/poll.(*FD).Close(0xc000100a00)
\t/go/src/internal/poll/fd_windows.go:413 +0x6f
os.(*file).close(0xc000100a00)
\t/go/src/os/file_windows.go:116 +0x37
os.(*File).Close(...)
\t/go/src/os/file_posix.go:22
os_test.TestPipeIOCloseRace.func3()
\t/go/src/os/os_test.go:2711 +0x45
"""
READER = """goroutine 20 [syscall, 9 minutes]:
syscall.SyscallN(0x7ffa1c2d4f10?, {0xc00012fb98?, 0x5?, 0x0?})
\t/go/src/runtime/syscall_windows.go:519 +0x7e
syscall.readFile(0x1a4, {0xc000124000?, 0x2, 0x200}, 0xc00012fc24, 0x0)
\t/go/src/syscall/zsyscall_windows.go:1024 +0xe5
syscall.ReadFile(...)
\t/go/src/syscall/syscall_windows.go:442
internal/poll.(*FD).Read(0xc000100780, {0xc000124000, 0x2, 0x200})
\t/go/src/internal/poll/fd_windows.go:458 +0x2ef
os.(*File).read(...)
\t/go/src/os/file_posix.go:29
os.(*File).Read(0xc00008a040, {0xc000124000?, 0x0?, 0x0?})
\t/go/src/os/file.go:124 +0x52
os_test.TestPipeIOCloseRace.func2()
\t/go/src/os/os_test.go:2690 +0x7a
"""
HANG = TIMEOUT + CANCELLER + "\n" + READER


def test_well_formed_hang_is_strong() -> None:
    a = analyze_goroutines(HANG)
    assert (a.label, a.confidence) == (Label.CANCELIOEX_SYNC_IO, Confidence.STRONG)
    assert a.problems == []


def test_notes_after_headers_and_frames_are_set_aside() -> None:
    annotated = HANG.replace(
        "goroutine 21 [syscall, 9 minutes]:", "goroutine 21 [syscall, 9 minutes]:   <- stuck here"
    ).replace("syscall.CancelIoEx(0x1a4, 0x0)", "syscall.CancelIoEx(0x1a4, 0x0)   // never returns")
    annotated = annotated.replace(
        "\t/go/src/syscall/zsyscall_windows.go:1024 +0xe5",
        "\t/go/src/syscall/zsyscall_windows.go:1024 +0xe5  <-- blocked",
    )
    a = analyze_goroutines(annotated)
    assert a.label is Label.CANCELIOEX_SYNC_IO
    assert a.confidence is Confidence.PARTIAL
    assert any("note after goroutine 21's header" in p for p in a.problems), a.problems
    assert any("never returns" in p for p in a.problems), a.problems


def test_marked_single_frames_are_read_not_refused() -> None:
    """A person who pastes only the frame that matters, with a mark before it: each
    goroutine has one frame, which the mark used to make unreadable (no frame at all: the
    text was refused as prose). Read, with the marks in ``problems``; single frames make
    the label weak."""
    text = (
        TIMEOUT
        + "goroutine 21 [syscall, 9 minutes]:   <- the closer\n"
        + "--> syscall.CancelIoEx(0x1a4, 0x0)\n\n"
        + "goroutine 20 [syscall, 9 minutes]:\n"
        + ">>> syscall.ReadFile(...)   <- never returns\n"
    )
    a = analyze_goroutines(text)
    assert (a.label, a.confidence) == (Label.CANCELIOEX_SYNC_IO, Confidence.WEAK)
    assert any("mark before a frame set aside: '-->'" in p for p in a.problems), a.problems
    assert any("mark before a frame set aside: '>>>'" in p for p in a.problems), a.problems


def test_a_blank_line_under_an_annotated_header_keeps_its_frame() -> None:
    """Go prints no blank line between a header and its frames: a person's paste did."""
    text = (
        TIMEOUT + "goroutine 5 [chan receive, 12 minutes]:   <- stuck here\n\n"
        "main.main()   // waits on done\n\t/src/main.go:9 +0x1d\n"
    )
    a = analyze_goroutines(text)
    assert (a.label, a.confidence) == (Label.OTHER_HANG, Confidence.WEAK)
    assert a.signature == "other-hang:chan receive@main.main"
    assert any("blank line after the header of goroutine 5: joined" in p for p in a.problems)


@pytest.mark.parametrize(
    "text",
    [
        "goroutine 9 [syscall]:\n\n--> Close -> CancelIoEx -> ReadFile\n",
        "goroutine 9 [syscall]:  <- stuck\n\n* it never returns from CancelIoEx\n",
    ],
)
def test_marks_and_blank_lines_do_not_turn_prose_into_frames(text: str) -> None:
    with pytest.raises(NotADumpError):
        analyze_goroutines(text)


def test_hand_indentation_and_elisions_are_read() -> None:
    lines = []
    for line in HANG.split("\n"):
        if line.startswith("\t"):
            lines.append("        " + line.strip())
        elif line.startswith(("syscall", "internal", "os")):
            lines.append("    " + line)
        else:
            lines.append(line)
    text = "\n".join(lines).replace("os.(*File).read(...)", "...\nos.(*File).read(...)")
    a = analyze_goroutines(text)
    assert a.label is Label.CANCELIOEX_SYNC_IO
    assert any("left out by hand" in p for p in a.problems), a.problems
    assert a.confidence is Confidence.PARTIAL


def test_cut_top_reads_the_first_goroutine_without_header() -> None:
    """A page that lost its top: the canceller's frames, then the reader with its header."""
    cut = CANCELLER.split("\n", 1)[1] + "\n" + READER
    (dump,) = parse_goroutine_dumps(cut)
    first = dump.goroutines[0]
    assert (first.id, first.state, first.headerless) == (-1, "unknown", True)
    assert "syscall.CancelIoEx" in first.functions
    a = analyze_goroutines(cut)
    # The canceller role needs frames only; the reader has its header and state.
    assert a.label is Label.CANCELIOEX_SYNC_IO
    assert a.confidence is Confidence.PARTIAL
    assert any("before the first goroutine header" in p for p in a.problems)


def test_reader_without_its_header_is_half_a_pattern_not_a_guess() -> None:
    """sync-io needs the state ``syscall``, which stood in the header that is gone."""
    cut = READER.split("\n", 1)[1] + "\n" + TIMEOUT + CANCELLER
    a = analyze_goroutines(cut)
    assert a.label is Label.OTHER_HANG
    assert "syscall.CancelIoEx" in a.signature
    reasons = [e for e in a.evidence if e.rule == "cancelioex-with-sync-io"]
    assert len(reasons) == 1, a.evidence
    detail = reasons[0].detail
    # Which frames were found, where, and which are missing, with the nearest miss.
    assert detail.startswith(
        "not applied, half of the pattern: found canceller: syscall.CancelIoEx in goroutine 21;"
        " missing sync-io: one of golang.org/x/sys/windows.ReadFile,"
    ), detail
    assert "innermost 8 frames, in state syscall" in detail
    assert detail.endswith("(goroutine -1 has syscall.ReadFile, but in state unknown)"), detail
    assert reasons[0].goroutines == [21]


def test_half_pattern_says_when_no_goroutine_has_the_missing_frames() -> None:
    a = analyze_goroutines(TIMEOUT + CANCELLER)
    (reason,) = [e.detail for e in a.evidence if e.rule == "cancelioex-with-sync-io"]
    assert reason.endswith("(no stuck goroutine has any of these frames)"), reason


def test_half_pattern_names_the_caller_a_lock_role_needs() -> None:
    """A goroutine in Mutex.Lock, but not under hangtest's lockRightThenLeft."""
    left = (
        "goroutine 8 [sync.Mutex.Lock]:\nsync.(*Mutex).Lock(0xc0000a0010)\n"
        "\t/go/src/sync/mutex.go:90 +0x45\nmain.lockLeftThenRight(0xc0000a0000)\n"
        "\t/src/hangtest/scenario_control.go:70 +0x5d\n\n"
        "goroutine 9 [sync.Mutex.Lock]:\nsync.(*Mutex).Lock(0xc0000a0018)\n"
        "\t/go/src/sync/mutex.go:90 +0x45\nmain.other(0xc0000a0000)\n"
        "\t/src/hangtest/other.go:12 +0x5d\n"
    )
    a = analyze_goroutines(TIMEOUT + left)
    (reason,) = [e.detail for e in a.evidence if e.rule == "control-lock-inversion"]
    assert "found left-then-right: sync.(*Mutex).Lock in goroutine 8" in reason, reason
    assert "called from main.lockRightThenLeft" in reason
    assert "goroutine 9 has sync.(*Mutex).Lock, but not called from main.lockRightThenLeft" in (
        reason
    )


def test_stack_without_any_header_is_a_weak_dump() -> None:
    text = "some log line\n" + CANCELLER.split("\n", 1)[1]
    assert detect_kind(text.encode()) is DumpKind.GOROUTINES
    a = analyze_goroutines(text)
    assert a.label is Label.OTHER_HANG
    assert a.confidence is Confidence.WEAK


def test_label_from_single_frames_is_weak() -> None:
    one = "goroutine 5 [chan receive]:\nmain.main()\n\t/src/main.go:9 +0x1d\n"
    a = analyze_goroutines(TIMEOUT + one)
    assert (a.label, a.confidence) == (Label.OTHER_HANG, Confidence.WEAK)


def test_cut_bottom_marks_the_goroutine_truncated() -> None:
    a = analyze_goroutines(HANG[: HANG.index("internal/poll.(*FD).Read(") + 20])
    assert a.label is Label.CANCELIOEX_SYNC_IO
    assert a.confidence is Confidence.PARTIAL
    assert any("the dump was cut" in p for p in a.problems)


def test_html_escaped_page_source_is_decoded() -> None:
    page = (
        "<pre><code>"
        + html.escape(HANG.replace("+0x45", "+0x45 <autogenerated>"))
        + "</code></pre>"
    )
    page = page.replace("goroutine 20", '<span class="pl-k">goroutine</span> 20')
    a = analyze_bytes(page.encode(), name="issue.html")
    assert a.label is Label.CANCELIOEX_SYNC_IO
    assert a.problems[0].startswith("HTML entities decoded and tags removed")
    assert a.confidence is Confidence.PARTIAL


def test_a_blogs_code_block_with_a_copy_button_is_read_as_the_crash_it_shows() -> None:
    """A static site's code block (shiki): a copy button and a span per line. The button
    stood before `panic:`, so the line did not start with it and the crash went unseen."""
    lines = ("panic: boom\n\n" + READER).rstrip("\n").split("\n")
    page = (
        '<div class="language- vp-adaptive-theme"><button title="Copy Code" class="copy">'
        '</button><span class="lang"></span><pre class="shiki vp-code" tabindex="0"><code>'
        + "\n".join(f'<span class="line"><span>{line}</span></span>' for line in lines)
        + '</code></pre></div><h3 id="next" tabindex="-1">Next</h3>'
    )
    a = analyze_goroutines(page)
    assert (a.label, a.signature) == (Label.NO_HANG, "no-hang:crash:panic")
    assert a.problems == ["tags removed (a page's source)"]


def test_go_autogenerated_file_name_is_no_tag() -> None:
    page = "<pre>" + HANG.replace("+0x45", "+0x45\nmain.f()\n\t<autogenerated>:1") + "</pre>"
    (dump,) = parse_goroutine_dumps(unwrap(page).text)
    assert ("main.f", "<autogenerated>", 1) in [f for g in dump.goroutines for f in g.frames]


def test_page_source_with_tags_and_no_entity_is_read() -> None:
    page = (
        "<pre>"
        + TIMEOUT
        + CANCELLER
        + "\n"
        + READER.replace("goroutine 20", '<span class="pl-k">goroutine</span> 20')
        + "</pre>"
    )
    a = analyze_goroutines(page)
    assert a.label is Label.CANCELIOEX_SYNC_IO
    assert a.problems[0] == "tags removed (a page's source)"


def test_go_test_json_output_fields_are_joined() -> None:
    events = [{"Action": "run", "Package": "os", "Test": "TestPipeIOCloseRace"}]
    # test2json splits long lines: cut every line in two events.
    for line in HANG.splitlines(keepends=True):
        half = len(line) // 2
        for piece in (line[:half], line[half:]):
            events.append({"Action": "output", "Package": "os", "Output": piece})
    events.append({"Action": "fail", "Package": "os", "Elapsed": 600.1})
    text = "\n".join(json.dumps(e) for e in events) + "\n"
    a = analyze_bytes(text.encode(), name="test.json")
    assert a.label is Label.CANCELIOEX_SYNC_IO
    assert "go test -json" in a.problems[0]


def test_br_tags_in_a_page_source_are_line_breaks() -> None:
    """A page that breaks its lines with <br> (a blog, a rendered issue) keeps each frame's
    function and source line apart; removing the tag would glue them into one line."""
    page = "<div>" + "<br/>\n".join(HANG.split("\n")).replace("\t", "  ") + "</div>"
    page = page.replace(
        "syscall.CancelIoEx(0x1a4, 0x0)<br/>\n", "syscall.CancelIoEx(0x1a4, 0x0) <br>"
    )
    a = analyze_goroutines(page)
    assert (a.label, a.confidence) == (Label.CANCELIOEX_SYNC_IO, Confidence.PARTIAL)
    assert a.problems == ["`<br>` read as line breaks and tags removed (a page's source)"]


def test_go_test_json_reads_each_packages_output_apart() -> None:
    """`go test -json ./...` interleaves packages: each package's dump is read on its own."""
    other = TIMEOUT + "goroutine 7 [chan receive, 10 minutes]:\nnet.TestAccept(0xc000100000)\n"
    other += "\t/go/src/net/net_test.go:40 +0x1d\n"
    streams = {"os": HANG.splitlines(keepends=True), "net": other.splitlines(keepends=True)}
    events = []
    for n in range(max(len(lines) for lines in streams.values())):
        for package, lines in streams.items():
            if n < len(lines):
                events.append({"Action": "output", "Package": package, "Output": lines[n]})
    text = "\n".join(json.dumps(e) for e in events) + "\n"
    analyses = analyze_goroutine_dumps(text)
    assert [(a.label, a.goroutines) for a in analyses] == [
        (Label.CANCELIOEX_SYNC_IO, 2),
        (Label.OTHER_HANG, 1),
    ]
    assert "2 packages' output read apart" in analyses[0].problems[0]


def test_ci_runner_prefixes_with_step_names_are_stripped() -> None:
    prefixed = "\n".join(
        f"windows-test\tRun go test\t2026-11-30T10:00:{n % 60:02d}.{n:07d}Z {line}"
        for n, line in enumerate(HANG.split("\n"))
    )
    a = analyze_goroutines(prefixed)
    assert a.label is Label.CANCELIOEX_SYNC_IO
    assert a.confidence is Confidence.STRONG


def test_several_dumps_in_one_log_are_each_read() -> None:
    log = "=== RUN TestA\n" + HANG + "\nFAIL\tos\t600.1s\n=== RUN TestB\n" + HANG
    assert len(parse_goroutine_dumps(log)) == 2
    assert analyze_goroutines(log).label is Label.CANCELIOEX_SYNC_IO


@pytest.mark.parametrize(
    ("preamble", "kind"),
    [
        ("fatal error: concurrent map writes\n\n", "fatal-error"),
        ("panic: runtime error: index out of range [3] with length 3\n\n", "panic"),
        (
            "panic: runtime error: invalid memory address or nil pointer dereference\n"
            "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a1f2e]\n\n",
            "SIGSEGV",
        ),
        (
            "Exception 0xc0000005 0x0 0x0 0x7ff6b2a51234\nPC=0x7ff6b2a51234\n\n",
            "exception-0xc0000005",
        ),
        (
            "runtime: program exceeds 10000-thread limit\nfatal error: thread exhaustion\n\n",
            "thread-limit",
        ),
    ],
)
def test_crashes_are_not_hangs_whatever_their_goroutines_wait_on(preamble: str, kind: str) -> None:
    a = analyze_goroutines(preamble + CANCELLER + "\n" + READER)
    assert (a.label, a.signature) == (Label.NO_HANG, f"no-hang:crash:{kind}")
    assert a.stuck == []


def test_crash_line_far_above_the_goroutines_still_counts() -> None:
    """A register dump and a runtime stack can push the crash's line out of the window."""
    registers = "".join(f"r{n}     0x{n:x}\n" for n in range(60))
    a = analyze_goroutines("Exception 0xc0000005 0x0 0x0 0x0\nPC=0x0\n" + registers + "\n" + READER)
    assert a.label is Label.NO_HANG


@pytest.mark.parametrize(
    "preamble",
    [
        "panic: test timed out after 10m0s\n\n",
        "fatal error: all goroutines are asleep - deadlock!\n\n",
    ],
)
def test_timeouts_and_deadlocks_are_hangs(preamble: str) -> None:
    assert (
        analyze_goroutines(preamble + CANCELLER + "\n" + READER).label is Label.CANCELIOEX_SYNC_IO
    )


@pytest.mark.parametrize(
    "text",
    [
        "Close() -> CancelIoEx -> waits for the reader -> ReadFile never returns\n",
        "<html><body>&lt;nothing here&gt;</body></html>\n",
        '{"Action":"output","Output":"ok  \\tos\\t0.5s\\n"}\n',
        "",
    ],
)
def test_text_that_is_no_dump_is_refused(text: str) -> None:
    with pytest.raises(NotADumpError) as caught:
        analyze_bytes(text.encode(), name="paste.txt")
    assert "goroutine header" in str(caught.value)


def test_a_header_with_no_frame_under_it_is_prose_and_refused():
    with pytest.raises(NotADumpError):
        analyze_goroutines("goroutine 9 [syscall]: Close -> CancelIoEx -> stuck\n")


def test_a_tests_own_log_line_about_a_panic_does_not_make_the_dump_a_crash():
    text = "=== RUN   TestPipe\n    pipe_test.go:33: recovered panic: boom\n" + TIMEOUT + READER
    analysis = analyze_goroutines(text)
    assert analysis.label is not Label.NO_HANG


def test_a_crash_whose_panic_line_was_cut_is_known_by_its_signal_line():
    text = "[signal 0xc0000005 code=0x0 addr=0x0 pc=0x7ff6a1b2]\n\n" + READER
    analysis = analyze_goroutines(text)
    assert analysis.label is Label.NO_HANG
    assert analysis.signature == "no-hang:crash:exception-0xc0000005"


def test_what_go_test_prints_after_a_dump_ends_it_and_is_no_problem():
    text = TIMEOUT + READER + "exit status 2\nFAIL\texample.com/pipe\t600.123s\n"
    analysis = analyze_goroutines(text)
    assert analysis.problems == []
    assert analysis.confidence is Confidence.STRONG


def test_a_utf16_log_as_windows_powershell_writes_it_is_read():
    text = TIMEOUT + CANCELLER + "\n" + READER
    plain = analyze_bytes(text.encode(), name="log.txt")
    wide = analyze_bytes(text.encode("utf-16"), name="log.txt")
    assert (wide.label, wide.signature) == (plain.label, plain.signature)
