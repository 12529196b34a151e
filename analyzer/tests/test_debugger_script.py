"""The cdb/WinDbg script written from a minidump's triage."""

from __future__ import annotations

from reprofarm_analyzer.debugger_script import cdb_script
from reprofarm_protocol.analysis import Analysis, DumpKind, Evidence, Label, ThreadTop


def triage() -> Analysis:
    return Analysis(
        kind=DumpKind.MINIDUMP,
        label=Label.CANCELIOEX_SYNC_IO,
        signature="cancelioex-sync-io:ntdll!NtCancelIoFileEx|ntdll!NtReadFile",
        rules_version=1,
        evidence=[
            Evidence(
                rule="minidump.cancelioex-sync-io",
                detail="thread 4660 cancels; thread 6000 reads",
                threads=[4660, 6000],
            )
        ],
        threads=[
            ThreadTop(id=100, top="ntdll!NtWaitForSingleObject+0x14", role="wait"),
            ThreadTop(id=6000, top="ntdll!NtReadFile+0x14", role="sync-read"),
            ThreadTop(id=4660, top="ntdll!NtCancelIoFileEx+0x14", role="cancel-io"),
            ThreadTop(id=7, top="hangtest+0x5a3f0", role=None),
        ],
    )


def test_script_loads_symbols_and_lists_every_stack_first() -> None:
    lines = cdb_script(triage(), dump_name="run-42.dmp").splitlines()
    commands = [line for line in lines if not line.startswith(("$$", ".echo"))]
    assert commands[:3] == [".symfix", ".reload", "~*k"]
    assert commands[-1] == "!runaway"
    assert "$$ run: cdb -z run-42.dmp -cf this-file   (type q to quit afterwards)" in lines


def test_threads_of_interest_come_in_pattern_order_with_hex_ids() -> None:
    switches = [line for line in cdb_script(triage()).splitlines() if line.startswith("~~[")]
    assert switches == ["~~[0x1234]s; kv", "~~[0x1770]s; kv", "~~[0x64]s; kv"]


def test_each_switch_is_preceded_by_what_the_triage_thinks_the_thread_is() -> None:
    lines = cdb_script(triage()).splitlines()
    at = lines.index("~~[0x1234]s; kv")
    assert lines[at - 2] == "$$ thread 4660 (0x1234): cancel-io, top ntdll!NtCancelIoFileEx+0x14"
    assert lines[at - 1].startswith(".echo === thread 4660 (0x1234): cancel-io: cancels I/O")


def test_threads_without_a_role_are_not_switched_to() -> None:
    assert "0x7]" not in cdb_script(triage())


def test_semicolons_in_text_cannot_start_a_command() -> None:
    """cdb ends a $$ comment or an .echo at a semicolon and runs what follows."""
    script = cdb_script(triage())
    evidence = [line for line in script.splitlines() if line.startswith("$$ evidence")]
    assert evidence == [
        "$$ evidence (minidump.cancelioex-sync-io): thread 4660 cancels, thread 6000 reads"
    ]
    for line in script.splitlines():
        if line.startswith(("$$", ".echo")):
            assert ";" not in line, line
