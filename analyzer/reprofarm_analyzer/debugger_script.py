"""A cdb/WinDbg command script for one minidump, written from its triage.

Why: the triage names each thread's top from export tables only; an engineer with the
Windows debugger and Microsoft's symbol server gets full native stacks. The script saves
finding the interesting threads by hand: it loads symbols, prints every stack, then switches
to each thread the triage marked and prints its stack with arguments, labelled with what the
triage thinks it is. Run it as ``cdb -z dump.dmp -cf script.txt`` (or ``$$<script.txt`` in
WinDbg).

cdb syntax used: ``$$`` starts a comment (not echoed), ``.echo`` prints a line, ``~~[tid]s``
switches to the thread with that OS thread id (written in hex), ``kv`` prints a
stack with frame data and arguments, ``!runaway`` shows the CPU time each thread used (a
thread that ran for seconds is not parked in a wait).
"""

from __future__ import annotations

from reprofarm_protocol.analysis import Analysis

from reprofarm_analyzer.minidump_analysis import CANCEL_IO, SYNC_READ, SYNC_WRITE, WAIT

_MEANING = {
    CANCEL_IO: "cancels I/O (CancelIoEx): waits for a cancel APC to run in another thread",
    SYNC_READ: "waits in a synchronous ReadFile: cannot run the cancel APC while it waits",
    SYNC_WRITE: "waits in a synchronous WriteFile: cannot run the cancel APC while it waits",
    WAIT: "waits on an object, a timer or a completion port",
}
_ORDER = (CANCEL_IO, SYNC_READ, SYNC_WRITE, WAIT)


def cdb_script(analysis: Analysis, *, dump_name: str = "dump.dmp") -> str:
    """The script's text, CRLF-free (cdb reads either). Threads with a role come first, the
    pattern's own (cancel-io, sync I/O) before waits; threads without a role are only in the
    ``~*k`` listing."""
    lines = [
        f"$$ reprofarm triage of {dump_name}: {analysis.label.value} ({analysis.signature})",
        f"$$ run: cdb -z {dump_name} -cf this-file   (type q to quit afterwards)",
        "$$ Go code has no PDB: cdb shows it as hangtest+0xOFF, the goroutine dump names it",
        "$$ Microsoft's symbol server, cached locally, for full native stacks:",
        ".symfix",
        ".reload",
        ".echo === every thread's stack (~*k)",
        "~*k",
    ]
    marked = sorted(
        (t for t in analysis.threads if t.role in _MEANING),
        key=lambda t: (_ORDER.index(t.role or ""), t.id),
    )
    for thread in marked:
        role = thread.role or ""
        lines += [
            f"$$ thread {thread.id} ({thread.id:#x}): {role}, top {thread.top}",
            f".echo === thread {thread.id} ({thread.id:#x}): {role}: {_MEANING[role]}",
            f"~~[{thread.id:#x}]s; kv",
        ]
    for item in analysis.evidence:
        lines.append(f"$$ evidence ({item.rule}): {item.detail}")
    lines += [
        ".echo === CPU time per thread (!runaway): parked threads have little",
        "!runaway",
    ]
    return "\n".join(_safe(line) for line in lines) + "\n"


def _safe(line: str) -> str:
    """cdb treats ``;`` as a command separator, even after ``$$`` and ``.echo``: a detail
    text containing one would run the rest as a command."""
    return line.replace(";", ",") if line.startswith(("$$", ".echo")) else line
