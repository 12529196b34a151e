"""The Wine test bed's own logic, without Wine: the mirror it debootstraps
from, how the check judges hangtest's events, and the minidump reader.
The runs under Wine themselves are the CI step (agent-windows/wine/check-hangtest.sh)."""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from reprofarm_agent.toolchains import Toolchain
from reprofarm_protocol.hangtest_events import parse_event

WINE = Path(__file__).resolve().parents[1] / "wine"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, WINE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check = _load("check_hangtest")
describe = _load("describe_minidump")


def _host_mirror(apt: Path) -> str:
    done = subprocess.run(
        ["bash", "-c", 'source "$0"; host_mirror "$1" | head -n 1', WINE / "prepare-root.sh", apt],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_mirror_comes_from_deb822_sources_skipping_security_and_other_repos(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    (tmp_path / "sources.list.d" / "node.sources").write_text(
        "Types: deb\nURIs: https://deb.nodesource.example/node_20.x\nSuites: nodistro\n"
    )
    assert _host_mirror(tmp_path) == "http://mirror.example/debian"


def test_mirror_comes_from_one_line_sources_with_options(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
    )
    assert _host_mirror(tmp_path) == "http://mirror.example/debian"


def _run(lines: list[dict[str, object]], exit_code: int) -> object:
    base = {"v": 1, "t": "2026-11-29T10:00:00Z"}
    events = [parse_event(json.dumps({**base, **line})) for line in lines]
    return check.WineRun(exit_code, events, [], "", "")


_START = {
    "event": "start", "hangtest_version": "dev", "go_version": "go1.21.13", "goos": "windows",
    "goarch": "amd64", "gomaxprocs": 2, "num_cpu": 2, "cpu_set": [0, 1], "pid": 32,
    "scenario": "pipe-close-race", "workers": 2, "iterations": 0, "duration_s": 2,
    "stall_timeout_s": 20, "on_stall": "dump-and-wait",
}  # fmt: skip
_DONE = {
    "event": "done", "elapsed_s": 2.0, "iterations": 500, "per_worker": [250, 250],
    "errors": 0, "reason": "completed", "exit_code": 0,
}  # fmt: skip
_GO = Toolchain(goroot=Path("/nonexistent"), version="go1.21.13")


def test_a_completed_run_with_matching_exit_code_passes_the_envelope_check() -> None:
    assert check.check_envelope(_run([_START, _DONE], 0), _GO, 0, "completed") == []


def test_exit_code_disagreeing_with_the_done_event_fails() -> None:
    problems = check.check_envelope(_run([_START, _DONE], 1), _GO, 0, "completed")
    assert problems
    assert "exit code 1, want 0" in problems[0]


def test_a_run_without_a_done_event_fails() -> None:
    problems = check.check_envelope(_run([_START], 0), _GO, 0, "completed")
    assert problems == ["the last event is start, not done"]


def test_a_binary_of_another_go_version_fails() -> None:
    other = Toolchain(goroot=Path("/nonexistent"), version="go1.27.3")
    problems = check.check_envelope(_run([_START, _DONE], 0), other, 0, "completed")
    assert problems
    assert "want windows/amd64 go1.27.3" in problems[0]


def test_goroutine_dump_paths_on_wines_z_drive_map_into_the_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REPROFARM_WINE_ROOT", "/srv/wine-root")
    assert check.windows_path("/work/check/go1.21.13") == "Z:\\work\\check\\go1.21.13"
    assert check.host_path("Z:\\work\\check\\goroutines-32-1-stall.txt") == Path(
        "/srv/wine-root/work/check/goroutines-32-1-stall.txt"
    )
    with pytest.raises(ValueError, match="Z: drive"):
        check.host_path("C:\\users\\root\\dump.txt")


def _minidump(rsp: int, rip: int) -> bytes:
    """A minimal MDMP: one thread (stack 0x1000..0x2000), one module
    (0x400000, 0x1000 bytes, hangtest.exe), AMD64 system info."""
    name = "C:\\hangtest.exe".encode("utf-16-le")
    header_size, dir_size = 32, 3 * 12
    threads_at = header_size + dir_size
    context_at = threads_at + 4 + 48
    modules_at = context_at + 1232
    name_at = modules_at + 4 + 108
    system_at = name_at + 4 + len(name)
    out = bytearray(system_at + 56)
    struct.pack_into("<4sIIIIIQ", out, 0, b"MDMP", 0xA793, 3, header_size, 0, 0, 0)
    for i, (kind, size, at) in enumerate(
        [(3, 4 + 48, threads_at), (4, 4 + 108, modules_at), (7, 56, system_at)]
    ):
        struct.pack_into("<III", out, header_size + 12 * i, kind, size, at)
    struct.pack_into("<I", out, threads_at, 1)
    struct.pack_into(
        "<IIIIQQIIII", out, threads_at + 4, 0x24, 0, 0, 0, 0, 0x1000, 0x1000, 0, 1232, context_at
    )
    struct.pack_into("<Q", out, context_at + 0x98, rsp)
    struct.pack_into("<Q", out, context_at + 0xF8, rip)
    struct.pack_into("<I", out, modules_at, 1)
    struct.pack_into("<QIIII", out, modules_at + 4, 0x400000, 0x1000, 0, 0, name_at)
    struct.pack_into("<I", out, name_at, len(name))
    out[name_at + 4 : name_at + 4 + len(name)] = name
    struct.pack_into("<HHHBBIII", out, system_at, 9, 6, 0, 2, 1, 10, 0, 19043)
    return bytes(out)


def test_minidump_threads_name_the_module_of_rip_and_check_rsp_in_the_stack(
    tmp_path: Path,
) -> None:
    path = tmp_path / "good.dmp"
    path.write_bytes(_minidump(rsp=0x1800, rip=0x400010))
    text = describe.describe(path)
    assert "system: amd64, 2 processors, Windows 10.0.19043" in text
    assert "1 modules: hangtest.exe" in text
    assert "tid 0x0024 suspend 0 rip 0x400010 in hangtest.exe, rsp 0x1800 in its 4096-byte" in text


def test_minidump_thread_with_rsp_off_its_stack_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "odd.dmp"
    path.write_bytes(_minidump(rsp=0x9000, rip=0x123))
    text = describe.describe(path)
    assert "rip 0x123 in ?, rsp 0x9000 OUTSIDE its 4096-byte stack" in text


def test_a_file_that_is_not_a_minidump_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not.dmp"
    path.write_bytes(b"ELF\0" + bytes(64))
    with pytest.raises(describe.MinidumpError, match="signature"):
        describe.describe(path)
