"""The export sidecar: export tables of the system DLLs, uploaded by the agent beside each
minidump.

Why: a full-memory dump holds the DLLs' images, but a small or partial dump (and every
public fixture) does not, and the analysing worker runs on Linux with no Windows DLLs. The
agent, on the machine that wrote the dump, reads ``ntdll``, ``kernelbase`` and ``kernel32``
from System32 and records each one's identity (TimeDateStamp and SizeOfImage, the pair the
dump's module list also records, plus sha256 and file version) and its named code exports.
The analyzer uses a table only for a module whose identity matches: export RVAs move between
builds, and a table of another build would name the wrong function.

Size, measured on Wine's real x64 DLLs (Wine 10, Debian trixie): ntdll's 1,404 code exports
make 61 KB of JSON, 13.5 KB gzip-compressed; ntdll, kernelbase and kernel32 together 169 KB,
36 KB compressed. Windows' own ntdll exports roughly 2,500 names (not measured: no Windows
DLL is at hand), under twice Wine's, so all code exports of the three stay far below the
1 MB budget and no list of wanted names is kept.

Errors: ``SidecarError`` for a file that is not a valid sidecar (the message says which field)
or a DLL that cannot be read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reprofarm_analyzer.minidump import module_short_name
from reprofarm_analyzer.pe_exports import PeError, read_pe_file

SIDECAR_FORMAT: Literal[1] = 1
SYSTEM_DLLS = ("ntdll.dll", "kernelbase.dll", "kernel32.dll")
"""What the agent should pass to ``build_sidecar``, from ``%SystemRoot%\\System32``."""


class SidecarError(ValueError):
    """A sidecar that cannot be read or built; the message names the file or field."""


class ExportEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    rva: int = Field(ge=0)


class ModuleExports(BaseModel):
    """One DLL: enough to prove it is the build the dump loaded, and its named code exports."""

    model_config = ConfigDict(frozen=True)

    module: str = Field(description="short name as in a minidump's module list: 'ntdll'")
    file_name: str = Field(description="the file's own name, e.g. 'ntdll.dll'")
    machine: str = Field(description="amd64, arm64, 386 or arm")
    file_version: str | None = Field(description="VS_FIXEDFILEINFO FileVersion, if any")
    sha256: str
    timestamp: int = Field(ge=0, description="COFF TimeDateStamp")
    size_of_image: int = Field(ge=0)
    exports: list[ExportEntry]


class ExportSidecar(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: Literal[1] = SIDECAR_FORMAT
    modules: list[ModuleExports]


def build_sidecar(dll_paths: Iterable[Path]) -> ExportSidecar:
    """Read each DLL and keep its named exports that point into code (data exports and
    forwarders can never be where a thread runs). Raises ``SidecarError``."""
    modules = []
    for path in dll_paths:
        try:
            pe = read_pe_file(path)
        except PeError as exc:
            raise SidecarError(f"sidecar: {exc}") from None
        image = pe.image
        modules.append(
            ModuleExports(
                module=module_short_name(path.name),
                file_name=path.name,
                machine=image.machine,
                file_version=image.file_version,
                sha256=pe.sha256,
                timestamp=image.timestamp,
                size_of_image=image.size_of_image,
                exports=[
                    ExportEntry(name=e.name, rva=e.rva)
                    for e in image.code_exports()
                    if e.name is not None
                ],
            )
        )
    return ExportSidecar(modules=modules)


def dump_sidecar(sidecar: ExportSidecar) -> bytes:
    """Compact JSON (no indentation): the file goes over the wire with every hang."""
    return sidecar.model_dump_json().encode()


def load_sidecar(data: bytes) -> ExportSidecar:
    try:
        return ExportSidecar.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        raise SidecarError(
            f"export sidecar: {where}: {first['msg']} ({exc.error_count()} problem(s))"
        ) from None
