"""Windows: job objects, suspended start with an affinity mask, minidumps.

Only this module calls Win32; what it gets back is decoded by the pure
functions of ``windows_facts`` (tested on every OS). References: Win32 docs of
CreateProcess (CREATE_SUSPENDED, CREATE_NEW_PROCESS_GROUP), job objects
(JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE), GetLogicalProcessorInformationEx,
IsWow64Process2, MiniDumpWriteDump, CreateEventW/SetEvent and
GenerateConsoleCtrlEvent.
"""

from __future__ import annotations

import sys

# mypy --platform linux skips the rest; at run time only Windows imports it.
assert sys.platform == "win32"

import ctypes
import mmap
import msvcrt
import os
import socket
import subprocess
import sysconfig
import time
import uuid
import winreg
from collections.abc import Mapping, Sequence
from ctypes import wintypes
from pathlib import Path
from typing import IO

from reprofarm_analyzer.sidecar import SYSTEM_DLLS
from reprofarm_protocol.runs import ArtifactKind

from reprofarm_agent.errors import CaptureError, PlacementError, ProbeError
from reprofarm_agent.hardware import ProbedFacts
from reprofarm_agent.hypervisor import classify_hypervisor
from reprofarm_agent.placement import CpuPlacement
from reprofarm_agent.platform import windows_facts
from reprofarm_agent.platform.base import KillOutcome, Spawned

_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_ntdll = ctypes.WinDLL("ntdll")


def _prototype(fn_name: str, restype: object, *argtypes: object) -> None:
    """Declare a kernel32 function: without it ctypes passes and returns C int,
    which truncates 64-bit handles."""
    fn = getattr(_kernel32, fn_name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


_H, _DW, _P = wintypes.HANDLE, wintypes.DWORD, ctypes.c_void_p
_prototype("GetCurrentProcess", _H)
_prototype("GetTickCount64", ctypes.c_ulonglong)
_prototype("CreateJobObjectW", _H, _P, wintypes.LPCWSTR)
_prototype("SetInformationJobObject", wintypes.BOOL, _H, ctypes.c_int, _P, _DW)
_prototype("QueryInformationJobObject", wintypes.BOOL, _H, ctypes.c_int, _P, _DW, _P)
_prototype("AssignProcessToJobObject", wintypes.BOOL, _H, _H)
_prototype("TerminateJobObject", wintypes.BOOL, _H, wintypes.UINT)
_prototype("TerminateProcess", wintypes.BOOL, _H, wintypes.UINT)
_prototype("SetProcessAffinityMask", wintypes.BOOL, _H, ctypes.c_size_t)
_prototype("CreateToolhelp32Snapshot", _H, _DW, _DW)
_prototype("Thread32First", wintypes.BOOL, _H, _P)
_prototype("Thread32Next", wintypes.BOOL, _H, _P)
_prototype("OpenThread", _H, _DW, wintypes.BOOL, _DW)
_prototype("ResumeThread", _DW, _H)
_prototype("CloseHandle", wintypes.BOOL, _H)
_prototype("GenerateConsoleCtrlEvent", wintypes.BOOL, _DW, _DW)
_prototype("CreateEventW", _H, _P, wintypes.BOOL, wintypes.BOOL, wintypes.LPCWSTR)
_prototype("SetEvent", wintypes.BOOL, _H)
_prototype("OpenProcess", _H, _DW, wintypes.BOOL, _DW)
_prototype("GetProcessTimes", wintypes.BOOL, _H, _P, _P, _P, _P)
_prototype("WaitForSingleObject", _DW, _H, _DW)
_prototype("GetLogicalProcessorInformationEx", wintypes.BOOL, ctypes.c_int, _P, _P)

CREATE_SUSPENDED = 0x00000004
CREATE_NEW_PROCESS_GROUP = 0x00000200
CTRL_BREAK_EVENT = 1
TH32CS_SNAPTHREAD = 0x00000004
THREAD_SUSPEND_RESUME = 0x0002
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JOBOBJECT_BASIC_ACCOUNTING_INFORMATION = 1
JOBOBJECT_EXTENDED_LIMIT_INFORMATION = 9
STILL_ACTIVE = 259
PROCESS_TERMINATE = 0x0001
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
SYNCHRONIZE = 0x00100000
WAIT_OBJECT_0 = 0
# MiniDumpWithFullMemory | WithHandleData | WithUnloadedModules | WithThreadInfo
# | WithFullMemoryInfo: everything a debugger needs to walk every thread.
_MINIDUMP_TYPE = 0x2 | 0x4 | 0x20 | 0x1000 | 0x800


class _THREADENTRY32(ctypes.Structure):
    _fields_ = [
        ("dwSize", wintypes.DWORD),
        ("cntUsage", wintypes.DWORD),
        ("th32ThreadID", wintypes.DWORD),
        ("th32OwnerProcessID", wintypes.DWORD),
        ("tpBasePri", wintypes.LONG),
        ("tpDeltaPri", wintypes.LONG),
        ("dwFlags", wintypes.DWORD),
    ]


class _IO_COUNTERS(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_ulonglong)
        for n in (
            "ReadOperationCount",
            "WriteOperationCount",
            "OtherOperationCount",
            "ReadTransferCount",
            "WriteTransferCount",
            "OtherTransferCount",
        )
    ]


class _BASIC_LIMIT(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", wintypes.DWORD),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", wintypes.DWORD),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", wintypes.DWORD),
        ("SchedulingClass", wintypes.DWORD),
    ]


class _EXTENDED_LIMIT(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", _BASIC_LIMIT),
        ("IoInfo", _IO_COUNTERS),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


class _BASIC_ACCOUNTING(ctypes.Structure):
    _fields_ = [
        ("TotalUserTime", ctypes.c_int64),
        ("TotalKernelTime", ctypes.c_int64),
        ("ThisPeriodTotalUserTime", ctypes.c_int64),
        ("ThisPeriodTotalKernelTime", ctypes.c_int64),
        ("TotalPageFaultCount", wintypes.DWORD),
        ("TotalProcesses", wintypes.DWORD),
        ("ActiveProcesses", wintypes.DWORD),
        ("TotalTerminatedProcesses", wintypes.DWORD),
    ]


class _MEMORYSTATUSEX(ctypes.Structure):
    _fields_ = [
        ("dwLength", wintypes.DWORD),
        ("dwMemoryLoad", wintypes.DWORD),
        ("ullTotalPhys", ctypes.c_ulonglong),
        ("ullAvailPhys", ctypes.c_ulonglong),
        ("ullTotalPageFile", ctypes.c_ulonglong),
        ("ullAvailPageFile", ctypes.c_ulonglong),
        ("ullTotalVirtual", ctypes.c_ulonglong),
        ("ullAvailVirtual", ctypes.c_ulonglong),
        ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
    ]


class _OSVERSIONINFOW(ctypes.Structure):
    _fields_ = [
        ("dwOSVersionInfoSize", wintypes.DWORD),
        ("dwMajorVersion", wintypes.DWORD),
        ("dwMinorVersion", wintypes.DWORD),
        ("dwBuildNumber", wintypes.DWORD),
        ("dwPlatformId", wintypes.DWORD),
        ("szCSDVersion", wintypes.WCHAR * 128),
    ]


class _SYSTEM_INFO(ctypes.Structure):
    _fields_ = [
        ("wProcessorArchitecture", wintypes.WORD),
        ("wReserved", wintypes.WORD),
        ("dwPageSize", wintypes.DWORD),
        ("lpMinimumApplicationAddress", ctypes.c_void_p),
        ("lpMaximumApplicationAddress", ctypes.c_void_p),
        ("dwActiveProcessorMask", ctypes.c_size_t),
        ("dwNumberOfProcessors", wintypes.DWORD),
        ("dwProcessorType", wintypes.DWORD),
        ("dwAllocationGranularity", wintypes.DWORD),
        ("wProcessorLevel", wintypes.WORD),
        ("wProcessorRevision", wintypes.WORD),
    ]


def _check(ok: int, what: str) -> None:
    if not ok:
        raise ctypes.WinError(ctypes.get_last_error(), what)


def _registry_value(path: str, name: str) -> str:
    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path) as key:
            value, _kind = winreg.QueryValueEx(key, name)
            return str(value).strip()
    except OSError:
        return ""


def _processor_information() -> bytes:
    size = wintypes.DWORD(0)
    _kernel32.GetLogicalProcessorInformationEx(windows_facts.RELATION_ALL, None, ctypes.byref(size))
    buf = ctypes.create_string_buffer(size.value)
    _check(
        _kernel32.GetLogicalProcessorInformationEx(
            windows_facts.RELATION_ALL, buf, ctypes.byref(size)
        ),
        "GetLogicalProcessorInformationEx",
    )
    return buf.raw[: size.value]


def _native_arch() -> str:
    process_machine = wintypes.USHORT(0)
    native_machine = wintypes.USHORT(0)
    is_wow64_process2 = getattr(_kernel32, "IsWow64Process2", None)
    if is_wow64_process2 is not None and is_wow64_process2(
        _kernel32.GetCurrentProcess(), ctypes.byref(process_machine), ctypes.byref(native_machine)
    ):
        return windows_facts.native_arch(native_machine.value, None)
    info = _SYSTEM_INFO()
    _kernel32.GetNativeSystemInfo(ctypes.byref(info))
    return windows_facts.native_arch(None, info.wProcessorArchitecture)


def _accepts_dump_event(binary: str) -> bool:
    """Whether this hangtest build knows -dump-event: an older one exits 2 on
    an unknown flag. Go keeps flag names as plain strings in the binary."""
    try:
        with (
            Path(binary).open("rb") as f,
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m,
        ):
            return m.find(b"dump-event") != -1
    except (OSError, ValueError):
        return False


def _create_dump_event(argv: Sequence[str]) -> tuple[int | None, list[str]]:
    """A named auto-reset event for on-demand goroutine dumps (docs/hangtest.md),
    created before the start so a request can never miss it, and argv with
    ``-dump-event NAME``. A service has no console for Ctrl+Break; an event
    needs none. Without the event (an older hangtest, or CreateEventW failed)
    argv is unchanged and dumps fall back to Ctrl+Break, as before."""
    if not argv or not _accepts_dump_event(argv[0]):
        return None, list(argv)
    name = f"Local\\reprofarm-dump-{uuid.uuid4().hex}"
    event = _kernel32.CreateEventW(None, False, False, name)
    if not event:
        return None, list(argv)
    return int(event), [argv[0], "-dump-event", name, *argv[1:]]


def _os_version() -> tuple[str, int]:
    info = _OSVERSIONINFOW()
    info.dwOSVersionInfoSize = ctypes.sizeof(info)
    # RtlGetVersion is not subject to the manifest-based version lie of GetVersionEx.
    if _ntdll.RtlGetVersion(ctypes.byref(info)) != 0:
        raise ProbeError("RtlGetVersion failed")
    ubr = _registry_value(r"SOFTWARE\Microsoft\Windows NT\CurrentVersion", "UBR")
    version = f"{info.dwMajorVersion}.{info.dwMinorVersion}.{info.dwBuildNumber}"
    return (f"{version}.{ubr}" if ubr else version), int(info.dwBuildNumber)


class WindowsPlatform:
    name = "windows"
    process_dump_kind = ArtifactKind.MINIDUMP

    def __init__(self, procdump: Path | None = None) -> None:
        self._procdump = procdump
        self._dump_events: dict[int, int] = {}  # pid -> event handle, until kill_tree

    def probe(self) -> ProbedFacts:
        version, build = _os_version()
        nt = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion"
        bios = r"HARDWARE\DESCRIPTION\System\BIOS"
        memory = _MEMORYSTATUSEX()
        memory.dwLength = ctypes.sizeof(memory)
        _check(_kernel32.GlobalMemoryStatusEx(ctypes.byref(memory)), "GlobalMemoryStatusEx")
        # A bare-metal Windows with virtualization-based security runs under
        # Hyper-V too (root partition); the BIOS strings tell a real VM apart.
        vendor_strings = [
            _registry_value(bios, "SystemManufacturer"),
            _registry_value(bios, "SystemProductName"),
            _registry_value(bios, "BaseBoardManufacturer"),
        ]
        return ProbedFacts(
            os="windows",
            os_version=version,
            os_name=windows_facts.product_name(_registry_value(nt, "ProductName"), build),
            arch=_native_arch(),
            python_arch=sysconfig.get_platform().rsplit("-", 1)[-1],
            cpu_model=_registry_value(
                r"HARDWARE\DESCRIPTION\System\CentralProcessor\0", "ProcessorNameString"
            )
            or "unknown",
            hypervisor=classify_hypervisor(vendor_strings, hypervisor_present=False),
            memory_bytes=int(memory.ullTotalPhys),
            hostname=socket.gethostname(),
            cpus=windows_facts.parse_processor_information(_processor_information()),
        )

    def spawn_on_cpus(
        self,
        argv: Sequence[str],
        placement: CpuPlacement,
        env: Mapping[str, str],
        stderr: IO[bytes],
    ) -> Spawned:
        if placement.group != 0:
            raise PlacementError(
                f"cpus: processor group {placement.group} placement is not supported yet; "
                "use CPUs of group 0"
            )
        mask = windows_facts.affinity_mask_for(placement.cpus)
        job = _kernel32.CreateJobObjectW(None, None)
        _check(job, "CreateJobObjectW")
        limits = _EXTENDED_LIMIT()
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        _check(
            _kernel32.SetInformationJobObject(
                job,
                JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
                ctypes.byref(limits),
                ctypes.sizeof(limits),
            ),
            "SetInformationJobObject",
        )
        dump_event, argv = _create_dump_event(argv)
        # Created suspended: the affinity and the job apply before the first
        # instruction; then every thread of the new process is resumed.
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=dict(env),
            creationflags=CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP,
        )
        handle = int(popen._handle)  # type: ignore[attr-defined]
        try:
            _check(_kernel32.AssignProcessToJobObject(job, handle), "AssignProcessToJobObject")
            _check(_kernel32.SetProcessAffinityMask(handle, mask), "SetProcessAffinityMask")
        except OSError as exc:
            _kernel32.TerminateProcess(handle, 1)
            _kernel32.CloseHandle(job)
            if dump_event is not None:
                _kernel32.CloseHandle(dump_event)
            raise PlacementError(
                f"cpus: could not place the process on {placement.cpus}: {exc}"
            ) from None
        if dump_event is not None:
            self._dump_events[popen.pid] = dump_event
        _resume_threads(popen.pid)
        return Spawned(popen=popen, tree_handle=int(job))

    def request_goroutine_dump(self, child: Spawned) -> None:
        event = self._dump_events.get(child.pid)
        if event is not None and _kernel32.SetEvent(event):
            return
        # Fallback: works when the agent shares a console with the child (its
        # own process group); a service without a console gets no dump this way.
        _kernel32.GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, child.pid)

    def dump_process(self, child: Spawned, path: Path) -> Path:
        target = path.with_suffix(".dmp")
        if self._procdump is not None:
            try:
                done = subprocess.run(
                    [str(self._procdump), "-accepteula", "-ma", str(child.pid), str(target)],
                    capture_output=True,
                    timeout=300,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise CaptureError(f"procdump could not run: {exc}") from None
            if not target.exists():
                raise CaptureError(f"procdump exited {done.returncode} without writing {target}")
            return target
        dbghelp = ctypes.WinDLL("dbghelp", use_last_error=True)
        dbghelp.MiniDumpWriteDump.restype = wintypes.BOOL
        dbghelp.MiniDumpWriteDump.argtypes = [_H, _DW, _H, ctypes.c_int, _P, _P, _P]
        handle = int(child.popen._handle)  # type: ignore[attr-defined]
        with target.open("wb") as f:
            ok = dbghelp.MiniDumpWriteDump(
                handle,
                child.pid,
                msvcrt.get_osfhandle(f.fileno()),
                _MINIDUMP_TYPE,
                None,
                None,
                None,
            )
        if not ok:
            raise CaptureError(
                f"MiniDumpWriteDump failed: {ctypes.WinError(ctypes.get_last_error())}"
            )
        return target

    def kill_tree(self, child: Spawned, timeout_s: float) -> KillOutcome:
        job = child.tree_handle
        _kernel32.TerminateJobObject(job, 1)
        try:
            child.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return KillOutcome(
                gone=False,
                detail=f"pid {child.pid} survived TerminateJobObject for {timeout_s}s",
            )
        accounting = _BASIC_ACCOUNTING()
        _kernel32.QueryInformationJobObject(
            job,
            JOBOBJECT_BASIC_ACCOUNTING_INFORMATION,
            ctypes.byref(accounting),
            ctypes.sizeof(accounting),
            None,
        )
        _kernel32.CloseHandle(job)
        if (event := self._dump_events.pop(child.pid, None)) is not None:
            _kernel32.CloseHandle(event)
        if accounting.ActiveProcesses:
            return KillOutcome(gone=False, detail=f"{accounting.ActiveProcesses} left in the job")
        return KillOutcome(gone=True, detail="job empty")

    def process_identity(self, pid: int) -> str | None:
        """The process's creation time (GetProcessTimes, 100 ns since 1601): a pid
        reused later has another."""
        handle = _kernel32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE, False, pid)
        if not handle:
            return None
        try:
            return _creation_time(handle)
        finally:
            _kernel32.CloseHandle(handle)

    def kill_leftover(self, pid: int, identity: str, timeout_s: float) -> KillOutcome | None:
        access = PROCESS_TERMINATE | PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE
        handle = _kernel32.OpenProcess(access, False, pid)
        if not handle:
            return None
        try:
            if _creation_time(handle) != identity:
                return None
            # Its job object closed with the agent that made it
            # (JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE), so a process still here
            # survived that already; terminate it by its own handle.
            _kernel32.TerminateProcess(handle, 1)
            if _kernel32.WaitForSingleObject(handle, int(timeout_s * 1000)) != WAIT_OBJECT_0:
                return KillOutcome(
                    gone=False,
                    detail=f"leftover pid {pid} survived TerminateProcess for {timeout_s}s",
                )
            return KillOutcome(gone=True, detail=f"leftover pid {pid} killed")
        finally:
            _kernel32.CloseHandle(handle)

    def system_dlls(self) -> list[Path]:
        """ntdll, kernelbase and kernel32 of this machine: the analyzer needs their
        export tables to name where a minidump's threads wait (a small dump holds
        almost none of their code)."""
        system32 = Path(os.environ.get("SYSTEMROOT", r"C:\Windows")) / "System32"
        return [system32 / name for name in SYSTEM_DLLS if (system32 / name).exists()]

    def boot_time(self) -> float:
        """Now minus GetTickCount64 (milliseconds since boot), to the second."""
        return float(round(time.time() - _kernel32.GetTickCount64() / 1000))


def _creation_time(handle: int) -> str | None:
    """The creation time of a running process, None once it has exited (a handle
    someone still holds keeps an exited process's pid taken)."""
    if _kernel32.WaitForSingleObject(handle, 0) == WAIT_OBJECT_0:
        return None
    times = [wintypes.FILETIME() for _ in range(4)]  # creation, exit, kernel, user
    if not _kernel32.GetProcessTimes(handle, *(ctypes.byref(t) for t in times)):
        return None
    created = times[0]
    return str((created.dwHighDateTime << 32) | created.dwLowDateTime)


def _resume_threads(pid: int) -> None:
    snapshot = _kernel32.CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0)
    entry = _THREADENTRY32()
    entry.dwSize = ctypes.sizeof(entry)
    resumed = 0
    try:
        more = _kernel32.Thread32First(snapshot, ctypes.byref(entry))
        while more:
            if entry.th32OwnerProcessID == pid:
                thread = _kernel32.OpenThread(THREAD_SUSPEND_RESUME, False, entry.th32ThreadID)
                if thread:
                    _kernel32.ResumeThread(thread)
                    _kernel32.CloseHandle(thread)
                    resumed += 1
            more = _kernel32.Thread32Next(snapshot, ctypes.byref(entry))
    finally:
        _kernel32.CloseHandle(snapshot)
    if resumed == 0:
        raise PlacementError(f"could not resume the suspended process {pid}")
