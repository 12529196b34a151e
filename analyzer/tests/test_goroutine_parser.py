"""The parser reads every traceback form Go 1.17-1.27 prints, and the logs around them.

Inputs are small dumps written inline in Go's format; the real dumps are in corpus/."""

from __future__ import annotations

from reprofarm_analyzer.goroutine_model import Frame
from reprofarm_analyzer.goroutines import count_headers, parse_goroutine_dumps

CLOSER = """goroutine 7 [semacquire, 9 minutes, locked to thread]:
internal/poll.runtime_Semacquire(0xc0000a4038?)
\truntime/sema.go:76 +0x25
internal/poll.(*FD).Close(0xc0000a4000)
\tinternal/poll/fd_windows.go:578 +0x6d
os.(*file).close(0xc0000a4000)
\tos/file_windows.go:127 +0x5a
created by main.main in goroutine 1
\tmain.go:20 +0x8a
"""


def only(text: str):
    dumps = parse_goroutine_dumps(text)
    assert len(dumps) == 1, f"expected one dump, got {len(dumps)}"
    return dumps[0]


def test_classic_header_with_minutes_and_lock() -> None:
    g = only(CLOSER).goroutines[0]
    assert (g.id, g.state, g.wait_minutes, g.locked) == (7, "semacquire", 9, True)
    assert g.functions == (
        "internal/poll.runtime_Semacquire",
        "internal/poll.(*FD).Close",
        "os.(*file).close",
    )
    assert g.frames[1] == Frame("internal/poll.(*FD).Close", "internal/poll/fd_windows.go", 578)
    assert (g.created_by, g.created_in) == ("main.main", 1)
    assert not g.truncated


def test_go123_header_with_gp_m_and_mp() -> None:
    text = (
        "goroutine 1 gp=0xc000002380 m=0 mp=0x5a3c60 [running]:\n"
        "main.main()\n\t/src/main.go:9 +0x25\n\n"
        "goroutine 2 gp=0xc000002e00 m=nil [force gc (idle)]:\n"
        "runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)\n\truntime/proc.go:402 +0xce\n"
    )
    dump = only(text)
    assert [(g.id, g.state) for g in dump.goroutines] == [(1, "running"), (2, "force gc (idle)")]


def test_wait_reason_with_parentheses_and_scan_flag() -> None:
    text = (
        "goroutine 5 [chan receive (nil chan), 3 minutes]:\nmain.f()\n\tm.go:1 +0x1\n\n"
        "goroutine 6 [select (no cases)]:\nmain.g()\n\tm.go:2 +0x1\n\n"
        "goroutine 8 [IO wait (scan)]:\nmain.h()\n\tm.go:3 +0x1\n"
    )
    states = [(g.state, g.wait_minutes) for g in only(text).goroutines]
    assert states == [
        ("chan receive (nil chan)", 3),
        ("select (no cases)", None),
        ("IO wait", None),
    ]


def test_old_created_by_and_elided_frames() -> None:
    text = (
        "goroutine 9 [running]:\nmain.deep(...)\n\tm.go:4\n...additional frames elided...\n"
        "created by main.start\n\tm.go:10 +0x3d\n\n"
        "goroutine 10 [running]:\nmain.a()\n\tm.go:5 +0x1\n...7 frames elided...\n"
        "main.b()\n\tm.go:6 +0x1\n"
    )
    first, second = only(text).goroutines
    assert (first.created_by, first.created_in, first.elided) == ("main.start", None, True)
    assert first.frames == [Frame("main.deep", "m.go", 4)]
    assert second.elided
    assert second.functions == ("main.a", "main.b")


def test_goroutine_running_on_another_thread_has_no_frames() -> None:
    text = "goroutine 3 [running]:\n\tgoroutine running on other thread; stack unavailable\n"
    g = only(text).goroutines[0]
    assert g.stack_unavailable
    assert g.frames == []
    assert not g.truncated


def test_crlf_line_endings_read_like_lf() -> None:
    assert only(CLOSER.replace("\n", "\r\n")).goroutines == only(CLOSER).goroutines


def test_dump_cut_mid_frame_keeps_what_was_read() -> None:
    dump = only(CLOSER[: CLOSER.index("os.(*file).close") + 9])
    g = dump.goroutines[0]
    assert g.truncated
    assert g.functions[:2] == ("internal/poll.runtime_Semacquire", "internal/poll.(*FD).Close")
    assert any("cut" in p for p in dump.problems), dump.problems


def test_cut_inside_arguments_keeps_the_function_name() -> None:
    text = "goroutine 58 [chan receive]:\ntesting.(*T).Run(0xc0001304e0, {0xc"
    g = only(text).goroutines[0]
    assert g.functions == ("testing.(*T).Run",)
    assert g.truncated


def test_test_timeout_preamble_and_running_tests_stay_outside_goroutines() -> None:
    text = (
        "=== RUN   TestPipe\npanic: test timed out after 10m0s\nrunning tests:\n"
        "\tTestPipe (10m0s)\n\n" + CLOSER
    )
    dump = only(text)
    assert dump.preamble[-3:] == [
        "panic: test timed out after 10m0s",
        "running tests:",
        "TestPipe (10m0s)",
    ]
    assert len(dump.goroutines) == 1
    assert dump.problems == []


def test_sigquit_preamble_and_register_dump_are_not_goroutines() -> None:
    text = (
        "SIGQUIT: quit\nPC=0x46cb21 m=0 sigcode=0\n\n"
        "goroutine 0 [idle]:\nruntime.futex(0x0, 0x80)\n\truntime/sys_linux_amd64.s:557 +0x21\n"
        "rax    0xca\nrip    0x46cb21\nrflags 0x286\n\n" + CLOSER
    )
    dump = only(text)
    assert dump.preamble == ["SIGQUIT: quit", "PC=0x46cb21 m=0 sigcode=0"]
    assert [g.id for g in dump.goroutines] == [0, 7]
    assert dump.problems == []


def test_a_repeated_goroutine_id_starts_a_second_dump() -> None:
    dumps = parse_goroutine_dumps(CLOSER + "\n" + CLOSER)
    assert [len(d.goroutines) for d in dumps] == [1, 1]


def test_a_panic_line_between_goroutines_starts_a_second_dump() -> None:
    other = CLOSER.replace("goroutine 7 ", "goroutine 8 ")
    text = (
        CLOSER + "\nexit status 2\nFAIL\tos\t600.1s\npanic: test timed out after 1m0s\n\n" + other
    )
    first, second = parse_goroutine_dumps(text)
    assert first.trailer == ["exit status 2", "FAIL\tos\t600.1s"]
    assert second.preamble == ["panic: test timed out after 1m0s"]


def test_github_actions_timestamps_are_stripped() -> None:
    stamped = "\n".join(
        f"2024-01-02T03:04:{i % 60:02d}.{1234567 + i}Z {line}"
        for i, line in enumerate(CLOSER.splitlines())
    )
    assert only(stamped).goroutines == only(CLOSER).goroutines


def test_journal_prefix_is_stripped() -> None:
    journal = "\n".join(
        f"Nov 29 16:{i:02d}:05 host hangtest[4242]: {line}"
        for i, line in enumerate(CLOSER.splitlines())
    )
    g = only(journal).goroutines[0]
    assert g.functions == only(CLOSER).goroutines[0].functions


def test_ci_noise_before_and_after_the_dump_is_not_a_problem() -> None:
    text = "##[group]Run go test ./...\nok  \tflag\t1.2s\n" + CLOSER + "\nFAIL\nexit status 2\n"
    dump = only(text)
    assert dump.problems == []
    assert dump.trailer == ["FAIL", "exit status 2"]


def test_wrapped_arguments_are_joined_back() -> None:
    text = (
        "goroutine 4 [syscall]:\nsyscall.Syscall6(0x7ffb5bbe6bf0, \n0x5, \n0x4a0, 0x0, ...)\n"
        "\tC:/Go/src/runtime/syscall_windows.go:174 +0x69\nmain.f()\n\tm.go:1 +0x1\n"
    )
    assert only(text).goroutines[0].functions == ("syscall.Syscall6", "main.f")


def test_unindented_source_lines_and_no_blank_between_goroutines() -> None:
    text = (
        "goroutine 1 [IO wait]:\nmain.f(0x1)\n/src/m.go:1 +0x1\n"
        "goroutine 2 [select]:\nmain.g()\n/src/m.go:2 +0x2\n"
    )
    dump = only(text)
    assert [g.functions for g in dump.goroutines] == [("main.f",), ("main.g",)]
    assert dump.problems == []


def test_text_before_the_first_header_that_looks_like_frames_is_reported() -> None:
    dump = only("os.(*File).Read(0x1)\n\t/go/src/os/file.go:118 +0x52\n\n" + CLOSER)
    assert "before the first goroutine header" in dump.problems[0]


def test_unreadable_lines_are_problems_not_errors() -> None:
    dump = only(CLOSER.replace("os.(*file).close(0xc0000a4000)", "@@@ garbage @@@"))
    assert any("not a traceback line" in p for p in dump.problems)


def test_header_count_matches_goroutines_read() -> None:
    text = CLOSER + "\n" + CLOSER.replace("goroutine 7", "goroutine 70")
    assert count_headers(text) == sum(len(d.goroutines) for d in parse_goroutine_dumps(text)) == 2


def test_text_without_headers_has_no_dump() -> None:
    assert parse_goroutine_dumps("WARNING: DATA RACE\nWrite by goroutine 39:\n") == []


def test_go127_labels_and_leaked_flag_in_the_header() -> None:
    text = (
        'goroutine 9 [select, 2 minutes] {worker: 3, phase: "close"}:\nmain.f()\n\tm.go:1 +0x1\n\n'
        "goroutine 10 [chan receive (leaked) (scan)]:\nmain.g()\n\tm.go:2 +0x1\n"
    )
    got = [(g.id, g.state, g.wait_minutes) for g in only(text).goroutines]
    assert got == [(9, "select", 2), (10, "chan receive", None)]
