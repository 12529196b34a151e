"""Triage of a Windows process dump: where each thread sits, what that makes of it (its
role), and what the threads together say (label, signature, evidence).

Rules, version ``MINIDUMP_RULES_VERSION`` (docs/analyzer.md, "Process dumps", has the table):

Roles come from a thread's top only, and only in ntdll, whose exported syscall stubs a
thread blocked in the kernel sits in (``Nt`` and ``Zw`` names are the same stubs), and only
within ``_ROLE_MAX_OFFSET`` of the export: a stub is a few dozen bytes, so an address farther
on is in some unexported function and the export's name would be a guess.
- ``NtCancelIoFileEx`` -> ``cancel-io``; ``NtReadFile`` -> ``sync-read``;
  ``NtWriteFile`` -> ``sync-write``;
- ``NtWait*`` (single or multiple objects, alerts, keyed events, worker factories),
  ``NtDelayExecution``, ``NtRemoveIoCompletion(Ex)``, ``NtSignalAndWaitForSingleObject``
  -> ``wait``.

Labels, first rule that applies:
1. a ``cancel-io`` thread and a ``sync-read``/``sync-write`` thread: ``cancelioex-sync-io``,
   the hang of the-hang.md (the cancel waits for an APC the synchronous reader cannot run);
2. an Exception stream recording a crash (an error-severity NTSTATUS other than WER's
   "application hang" code, or a fatal signal in breakpad's non-Windows dumps): ``no-hang``.
   Threads parked in waits do not change that: every process has idle threads;
3. otherwise ``other-hang``: the agent dumps only stalled processes, but threads waiting in
   the kernel look alike whether Go goroutines deadlocked (a control deadlock) or something
   else stalled; only the goroutine dump can tell, and the evidence says so.

Signatures name functions (or the faulting module), never addresses or thread ids:
``cancelioex-sync-io:ntdll!NtCancelIoFileEx|ntdll!NtReadFile``,
``no-hang:crash:0xc0000005:crash``, ``other-hang:ntdll!NtWaitForSingleObject``, and
``other-hang:unnamed`` when no thread's top could be named.
"""

from __future__ import annotations

from dataclasses import dataclass

from reprofarm_protocol.analysis import (
    Analysis,
    Confidence,
    DumpKind,
    Evidence,
    Label,
    ThreadTop,
)
from reprofarm_protocol.hardware import HardwareInfo

from reprofarm_analyzer.contexts import ContextError, decode_context
from reprofarm_analyzer.minidump import (
    ExceptionInfo,
    Minidump,
    MinidumpError,
    SystemInfo,
    parse_minidump,
)
from reprofarm_analyzer.sidecar import ExportSidecar, SidecarError, load_sidecar
from reprofarm_analyzer.symbolize import Symbol, Symbolizer

MINIDUMP_RULES_VERSION = 1

# Thread roles (ThreadTop.role), also used by cores and debugger_script.
CANCEL_IO = "cancel-io"
SYNC_READ = "sync-read"
SYNC_WRITE = "sync-write"
WAIT = "wait"

_ROLE_MAX_OFFSET = 0x100
_ROLES = {"CancelIoFileEx": CANCEL_IO, "ReadFile": SYNC_READ, "WriteFile": SYNC_WRITE}
_WAITS = ("DelayExecution", "RemoveIoCompletion", "SignalAndWaitForSingleObject")
_WER_HANG = 0xCFFFFFFF  # the code WER records in hang reports: not a crash
_DUMP_REQUESTED = 0xFFFFFFFF  # breakpad: a dump taken on request, no exception
_FATAL_SIGNALS = {4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 11: "SIGSEGV", 31: "SIGSYS"}
_EXCEPTION_NAMES = {
    0xC0000005: "access violation",
    0xC000000D: "invalid parameter",
    0xC00000FD: "stack overflow",
    0xC0000374: "heap corruption",
    0xC0000409: "fail-fast (stack buffer overrun)",
    0xE06D7363: "unhandled C++ exception",
}


@dataclass(frozen=True, slots=True)
class _Top:
    thread_id: int
    name: str | None
    symbol: Symbol | None
    role: str | None

    def describe(self) -> str:
        named = f" ({self.name!r})" if self.name else ""
        return f"thread {self.thread_id}{named} at {self.symbol or 'an unreadable context'}"


def analyze_minidump(data: bytes, *, sidecar: bytes | None = None) -> Analysis:
    """Triage one minidump. ``sidecar`` is the agent's export sidecar uploaded beside it, if
    any. Never raises for bad content: an unreadable sidecar is a problem, and a dump that
    cannot be parsed is ``other-hang`` (the agent dumps only stalled processes) with the
    reader's ``MinidumpError`` message as its problem and signature
    ``other-hang:unreadable-minidump``."""
    try:
        dump = parse_minidump(data)
    except MinidumpError as exc:
        return unreadable(DumpKind.MINIDUMP, MINIDUMP_RULES_VERSION, str(exc))
    problems: list[str] = []
    symbolizer = Symbolizer(dump, _sidecar(sidecar, problems))
    system = dump.system_info
    if system is None:
        problems.append("no SystemInfo stream: architecture and OS build unknown")
    elif not system.is_windows:
        problems.append(
            f"not a Windows process dump (platform id {system.platform_id:#x}, "
            f"{system.csd_version or 'no version string'}): the role rules are Windows rules"
        )
    if not dump.threads:
        problems.append("no ThreadList stream: no thread can be placed")
    tops = [_top(dump, i, symbolizer, problems) for i in range(len(dump.threads))]
    label, signature, evidence = _classify(dump, tops, symbolizer)
    problems += symbolizer.problems
    return Analysis(
        kind=DumpKind.MINIDUMP,
        label=label,
        signature=signature,
        confidence=process_dump_confidence(label, problems, stacks_read=bool(dump.threads)),
        rules_version=MINIDUMP_RULES_VERSION,
        evidence=evidence,
        problems=problems,
        arch=system.arch if system else None,
        os_build=system.os_build if system and system.is_windows else None,
        processors=system.processors if system else None,
        threads=[
            ThreadTop(id=t.thread_id, top=str(t.symbol or "unknown"), role=t.role) for t in tops
        ],
        modules=[m.name for m in dump.modules],
    )


def process_dump_confidence(label: Label, problems: list[str], *, stacks_read: bool) -> Confidence:
    """A process dump's confidence: ``weak`` without thread stacks; ``partial`` for
    ``other-hang`` (native stacks cannot tell which Go-level hang it is) or when something
    could not be read; ``strong`` for the CancelIoEx pattern or a crash, read whole."""
    if not stacks_read:
        return Confidence.WEAK
    if label is Label.OTHER_HANG or problems:
        return Confidence.PARTIAL
    return Confidence.STRONG


def unreadable(kind: DumpKind, rules_version: int, reason: str) -> Analysis:
    """The analysis of a process dump that cannot be read: ``other-hang``, since dumps are
    taken of stalled processes only, with signature ``other-hang:unreadable-<kind>`` and the
    reader's reason as the problem (the file is kept for a person to look at)."""
    return Analysis(
        kind=kind,
        label=Label.OTHER_HANG,
        signature=f"other-hang:unreadable-{kind.value}",
        confidence=Confidence.WEAK,
        rules_version=rules_version,
        evidence=[Evidence(rule=f"{kind.value}.unreadable", detail=f"unreadable {kind}: {reason}")],
        problems=[f"{kind.value}: {reason}"],
    )


def thread_role(symbol: Symbol) -> str | None:
    """The role a thread's top gives it (see the module docstring), or None."""
    if symbol.module != "ntdll" or symbol.export is None or symbol.offset > _ROLE_MAX_OFFSET:
        return None
    name = symbol.export
    if name[:2] not in ("Nt", "Zw"):
        return None
    call = name[2:]
    if call in _ROLES:
        return _ROLES[call]
    if call.startswith("Wait") or call.startswith(_WAITS):
        return WAIT
    return None


def _sidecar(data: bytes | None, problems: list[str]) -> ExportSidecar | None:
    if data is None:
        return None
    try:
        return load_sidecar(data)
    except SidecarError as exc:
        problems.append(f"{exc}: export names come from the dump alone")
        return None


def _top(dump: Minidump, index: int, symbolizer: Symbolizer, problems: list[str]) -> _Top:
    thread = dump.threads[index]
    arch = dump.system_info.arch if dump.system_info else None
    try:
        registers = decode_context(thread.context, arch)
    except ContextError as exc:
        problems.append(f"thread {thread.id}: {exc}")
        return _Top(thread.id, thread.name, None, None)
    symbol = symbolizer.symbol(registers.ip)
    return _Top(thread.id, thread.name, symbol, thread_role(symbol))


def _classify(
    dump: Minidump, tops: list[_Top], symbolizer: Symbolizer
) -> tuple[Label, str, list[Evidence]]:
    cancels = [t for t in tops if t.role == CANCEL_IO]
    syncs = [t for t in tops if t.role in (SYNC_READ, SYNC_WRITE)]
    if cancels and syncs:
        functions = _functions(cancels) + _functions(syncs)
        detail = (
            f"{_list(cancels)} cancels I/O while {_list(syncs)} waits in synchronous I/O: "
            f"the cancel's APC cannot run in a thread waiting synchronously, so both wait"
        )
        evidence = _evidence("minidump.cancelioex-sync-io", detail, cancels + syncs)
        return Label.CANCELIOEX_SYNC_IO, "cancelioex-sync-io:" + "|".join(functions), [evidence]
    crash = dump.exception
    if crash is not None and _is_crash(crash, dump.system_info):
        where = symbolizer.symbol(crash.address)
        place = where.function or where.module or "unknown"
        detail = (
            f"thread {crash.thread_id} raised {_exception_name(crash, dump.system_info)} at "
            f"{where}: the dump records a crash, not a hang"
        )
        evidence = Evidence(
            rule="minidump.crash", detail=detail, threads=[crash.thread_id], frames=[str(where)]
        )
        return Label.NO_HANG, f"no-hang:crash:{crash.code:#x}:{place}", [evidence]
    return _other_hang(tops, cancels + syncs)


def _other_hang(tops: list[_Top], partial: list[_Top]) -> tuple[Label, str, list[Evidence]]:
    waiting = [t for t in tops if t.role == WAIT]
    evidence = []
    if waiting:
        detail = (
            f"{len(waiting)} of {len(tops)} threads wait in the kernel ({_list(waiting)}); "
            f"from native stacks alone a control deadlock or a Go-level hang looks the same "
            f"as any other: the goroutine dump decides"
        )
        evidence.append(_evidence("minidump.waiting", detail, waiting))
    if partial:
        detail = (
            f"{_list(partial)} is in half of the CancelIoEx pattern, but no thread is in the "
            f"other half"
        )
        evidence.append(_evidence("minidump.partial-cancelioex", detail, partial))
    if not evidence:
        detail = (
            f"none of {len(tops)} threads sits in a named wait or I/O call (their tops may "
            f"lack export names): the dump alone does not say why the process stalled"
        )
        evidence.append(_evidence("minidump.unnamed", detail, tops))
    functions = _functions(waiting + partial) or ["unnamed"]
    return Label.OTHER_HANG, "other-hang:" + "|".join(functions), evidence


def _is_crash(exception: ExceptionInfo, system: SystemInfo | None) -> bool:
    code = exception.code
    if code in (_WER_HANG, _DUMP_REQUESTED):
        return False
    if system is not None and not system.is_windows:
        return code in _FATAL_SIGNALS  # breakpad stores the signal number
    return code >> 30 == 3  # NTSTATUS severity "error"; breakpoints are warnings


def _exception_name(exception: ExceptionInfo, system: SystemInfo | None) -> str:
    if system is not None and not system.is_windows:
        return _FATAL_SIGNALS.get(exception.code, f"signal {exception.code}")
    name = _EXCEPTION_NAMES.get(exception.code)
    return f"{exception.code:#010x}" + (f" ({name})" if name else "")


def _functions(tops: list[_Top]) -> list[str]:
    return sorted({t.symbol.function for t in tops if t.symbol and t.symbol.function})


def _list(tops: list[_Top]) -> str:
    return ", ".join(t.describe() for t in tops)


def _evidence(rule: str, detail: str, tops: list[_Top]) -> Evidence:
    return Evidence(
        rule=rule,
        detail=detail,
        threads=[t.thread_id for t in tops],
        frames=[str(t.symbol) for t in tops if t.symbol],
    )


def cross_check(analysis: Analysis, hardware: HardwareInfo) -> list[str]:
    """Where the dump's own system information disagrees with the agent's hardware record
    of the machine that ran it: a sign the dump or the record belongs to another machine (or
    that the probe misread it). Empty when they agree or the dump does not say."""
    found = []
    if analysis.arch and analysis.arch != hardware.arch:
        emulated = (
            " (the architecture its Python runs as)"
            if (analysis.arch == hardware.python_arch)
            else ""
        )
        found.append(
            f"architecture: the dump says {analysis.arch}{emulated}, the agent's record "
            f"{hardware.arch}"
        )
    if analysis.processors is not None and analysis.processors not in _processor_counts(hardware):
        found.append(
            f"processors: the dump says {analysis.processors}, the agent's record "
            f"{hardware.logical_cpus} logical CPUs"
        )
    if analysis.os_build:
        if hardware.os != "windows":
            found.append(
                f"OS: the dump is of Windows {analysis.os_build}, the agent runs {hardware.os}"
            )
        elif not _same_build(analysis.os_build, hardware.os_version):
            found.append(
                f"OS build: the dump says {analysis.os_build}, the agent's record "
                f"{hardware.os_version}"
            )
    return found


def _processor_counts(hardware: HardwareInfo) -> set[int]:
    """Counts a dump may truthfully record: SYSTEM_INFO counts the logical processors of
    the writer's processor group only, and the minidump field is one byte."""
    counts = {hardware.logical_cpus, hardware.logical_cpus % 256}
    for group in {cpu.group for cpu in hardware.cpus}:
        counts.add(sum(1 for cpu in hardware.cpus if cpu.group == group))
    return counts


def _same_build(dump_build: str, record: str) -> bool:
    """``10.0.22631`` matches ``10.0.22631`` and ``10.0.22631.4460`` (the record adds the
    update revision), not ``10.0.2263``."""
    return record.split(".")[:3] == dump_build.split(".")[:3]
