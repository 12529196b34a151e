"""The export table, identity and version of a PE image (a Windows DLL or EXE).

Why: a minidump names the module a thread sits in, not the function. For the system DLLs a
thread's top is a syscall stub (``ntdll!NtReadFile+0x14``), and stubs are exported, so the
nearest export at or below the address names the function without symbol files. The table
is read either from the file on disk (the agent, beside a dump) or from the image as it is
mapped in a full-memory dump.

Two layouts, one parser: on disk an RVA must be mapped through the section headers to a file
offset; in memory the image is mapped and an RVA is simply an offset from its base. Both are
read through ``_Space.read``, which checks every bound and raises ``PeError`` (what, which
RVA) for anything malformed; nothing else escapes.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MACHINES = {0x14C: "386", 0x8664: "amd64", 0x1C0: "arm", 0x1C4: "arm", 0xAA64: "arm64"}
"""IMAGE_FILE_MACHINE_* codes, named as the hardware record names machines."""

_COFF = struct.Struct("<HHIIIHH")
_SECTION = struct.Struct("<8sIIII12xI")
_EXPORT_DIRECTORY = struct.Struct("<IIHHIIIIIII")
_RESOURCE_DIRECTORY = struct.Struct("<12xHH")
_RESOURCE_ENTRY = struct.Struct("<II")
_RESOURCE_DATA = struct.Struct("<II")
_DATA_DIRECTORY = struct.Struct("<II")
_IMAGE_SIZES = struct.Struct("<III")  # SizeOfImage, SizeOfHeaders, CheckSum
_FIXED_FILE_INFO = struct.Struct("<IIII")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_FIXED_FILE_INFO_SIGNATURE = b"\xbd\x04\xef\xfe"
_EXECUTE = 0x2000_0000  # IMAGE_SCN_MEM_EXECUTE
_RT_VERSION = 16
_MAX_EXPORTS = 65536  # ordinals are 16-bit
_NAME_CHUNK = 64
_MAX_NAME = 512
_MAX_RESOURCE_ENTRIES = 4096


class PeError(ValueError):
    """Not a PE image, or one whose headers or export table point where they cannot."""


@dataclass(frozen=True, slots=True)
class Export:
    """One exported symbol. ``name`` is None for ordinal-only exports; ``forwarder`` is set
    (``NTDLL.RtlAllocateHeap``) when the export lives in another DLL and ``rva`` is then the
    forwarder string's, not code."""

    name: str | None
    ordinal: int
    rva: int
    forwarder: str | None = None


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    rva: int
    virtual_size: int
    raw_offset: int
    raw_size: int
    characteristics: int

    @property
    def executable(self) -> bool:
        return bool(self.characteristics & _EXECUTE)


@dataclass(frozen=True, slots=True)
class PeImage:
    """What symbolisation and the sidecar need of one image. ``timestamp`` and
    ``size_of_image`` are the pair a minidump's module list records, so they identify the
    exact build; ``file_version`` comes from VS_VERSION_INFO when the image has one."""

    machine: str
    timestamp: int
    size_of_image: int
    checksum: int
    dll_name: str | None
    file_version: str | None
    sections: tuple[Section, ...]
    exports: tuple[Export, ...]

    def code_exports(self) -> list[Export]:
        """Named exports that point into executable sections: the only ones a thread's
        instruction pointer can sit in (data exports and forwarders would mislead the
        nearest-export search)."""
        code = [s for s in self.sections if s.executable]
        return [
            e
            for e in self.exports
            if e.name
            and e.forwarder is None
            and any(s.rva <= e.rva < s.rva + max(s.virtual_size, s.raw_size) for s in code)
        ]


@dataclass(frozen=True, slots=True)
class PeFile:
    """A PE read from disk, with the digest that lets anyone check which file it was."""

    path: Path
    sha256: str
    image: PeImage


RvaReader = Callable[[int, int], bytes | None]
"""Reads ``size`` bytes at an RVA of a mapped image, None when they were not captured."""


def read_pe_file(path: Path) -> PeFile:
    """Parse a DLL on disk. Raises ``PeError`` (also when the file cannot be read)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PeError(f"{path}: cannot read: {exc}") from None
    return PeFile(path=path, sha256=hashlib.sha256(data).hexdigest(), image=parse_pe(data))


def parse_pe(data: bytes) -> PeImage:
    """Parse a PE in file layout (as stored on disk)."""
    return _parse(_Space(lambda rva, size: _slice(data, rva, size), mapped=False))


def parse_mapped_pe(read: RvaReader) -> PeImage:
    """Parse a PE in mapped layout, e.g. a module image read out of a full-memory dump."""
    return _parse(_Space(read, mapped=True))


def _slice(data: bytes, offset: int, size: int) -> bytes | None:
    if offset < 0 or size < 0 or offset + size > len(data):
        return None
    return data[offset : offset + size]


class _Space:
    """Bounds-checked reads by RVA. In file layout RVAs pass through the section table once
    it is known; before that (the headers) RVA and file offset coincide."""

    def __init__(self, read: RvaReader, *, mapped: bool) -> None:
        self._read = read
        self.mapped = mapped
        self.sections: tuple[Section, ...] = ()

    def read(self, rva: int, size: int, what: str) -> bytes:
        offset = rva if self.mapped or not self.sections else self._file_offset(rva, size, what)
        data = self._read(offset, size)
        if data is None or len(data) != size:
            where = "is not in the image" if self.mapped else "runs past the end of the file"
            raise PeError(f"{what}: {size} bytes at RVA {rva:#x} {where}")
        return data

    def unpack(self, fmt: struct.Struct, rva: int, what: str) -> tuple[Any, ...]:
        return fmt.unpack(self.read(rva, fmt.size, what))

    def cstring(self, rva: int, what: str) -> str:
        """A NUL-terminated ASCII name, read in small steps so a name near the end of the
        image still reads."""
        out = b""
        while b"\0" not in out:
            if len(out) >= _MAX_NAME:
                raise PeError(f"{what} at RVA {rva:#x}: no terminator in {_MAX_NAME} bytes")
            try:
                out += self.read(rva + len(out), _NAME_CHUNK, what)
            except PeError:  # near the end of a section or image: one byte at a time
                out += self.read(rva + len(out), 1, what)
        return out.split(b"\0", 1)[0].decode("ascii", errors="replace")

    def _file_offset(self, rva: int, size: int, what: str) -> int:
        """The file offset of ``size`` bytes at ``rva``, which must all lie in one section's
        raw data: past it the file holds another section, not what the RVA maps to."""
        for s in self.sections:
            if s.rva <= rva < s.rva + max(s.virtual_size, s.raw_size):
                if rva + size > s.rva + s.raw_size:
                    raise PeError(f"{what}: {size} bytes at RVA {rva:#x} run past {s.name}'s data")
                return s.raw_offset + rva - s.rva
        if rva < min(s.rva for s in self.sections):
            return rva  # the headers
        raise PeError(f"{what}: RVA {rva:#x} is in no section")


def _parse(space: _Space) -> PeImage:
    if space.read(0, 2, "DOS header") != b"MZ":
        raise PeError("not a PE image: no 'MZ' at offset 0")
    (pe_offset,) = space.unpack(_U32, 0x3C, "e_lfanew")
    if space.read(pe_offset, 4, "PE signature") != b"PE\0\0":
        raise PeError(f"not a PE image: no 'PE\\0\\0' at offset {pe_offset:#x}")
    coff = pe_offset + 4
    machine, n_sections, timestamp, _, _, optional_size, _ = space.unpack(_COFF, coff, "COFF")
    optional = coff + _COFF.size
    (magic,) = space.unpack(_U16, optional, "optional header magic")
    if magic not in (0x10B, 0x20B):
        raise PeError(f"optional header at {optional:#x}: unknown magic {magic:#x}")
    directories = optional + (96 if magic == 0x10B else 112)
    size_of_image, _, checksum = space.unpack(_IMAGE_SIZES, optional + 56, "SizeOfImage")
    (n_directories,) = space.unpack(_U32, directories - 4, "NumberOfRvaAndSizes")
    table = optional + optional_size
    space.sections = tuple(_section(space, table + i * _SECTION.size) for i in range(n_sections))
    export_rva, export_size = _directory(space, directories, n_directories, 0)
    resource_rva, _ = _directory(space, directories, n_directories, 2)
    dll_name, exports = _exports(space, export_rva, export_size) if export_rva else (None, ())
    return PeImage(
        machine=MACHINES.get(machine, f"unknown-{machine:#x}"),
        timestamp=timestamp,
        size_of_image=size_of_image,
        checksum=checksum,
        dll_name=dll_name,
        file_version=_file_version(space, resource_rva) if resource_rva else None,
        sections=space.sections,
        exports=exports,
    )


def _section(space: _Space, at: int) -> Section:
    raw_name, vsize, rva, raw_size, raw_offset, flags = space.unpack(_SECTION, at, "section")
    name = raw_name.rstrip(b"\0").decode("ascii", errors="replace")
    return Section(name, rva, vsize, raw_offset, raw_size, flags)


def _directory(space: _Space, at: int, count: int, index: int) -> tuple[int, int]:
    if index >= count:
        return 0, 0
    rva, size = space.unpack(_DATA_DIRECTORY, at + 8 * index, f"data directory {index}")
    return rva, size


def _exports(space: _Space, rva: int, size: int) -> tuple[str, tuple[Export, ...]]:
    """IMAGE_EXPORT_DIRECTORY and its three arrays. A function RVA inside the export
    directory's own range is a forwarder string, per the PE/COFF specification."""
    fields = space.unpack(_EXPORT_DIRECTORY, rva, "export directory")
    name_rva, base, n_functions, n_names, functions, names, ordinals = fields[4:]
    if n_functions > _MAX_EXPORTS or n_names > _MAX_EXPORTS:
        raise PeError(f"export directory at RVA {rva:#x}: {n_functions} functions, {n_names} names")
    addresses = struct.unpack(
        f"<{n_functions}I", space.read(functions, 4 * n_functions, "export address table")
    )
    name_rvas = struct.unpack(f"<{n_names}I", space.read(names, 4 * n_names, "export names"))
    indexes = struct.unpack(f"<{n_names}H", space.read(ordinals, 2 * n_names, "ordinals"))
    names_of: dict[int, list[str]] = {}
    for i, (name_at, index) in enumerate(zip(name_rvas, indexes, strict=True)):
        if index >= n_functions:
            raise PeError(f"export name {i} points at function {index} of {n_functions}")
        names_of.setdefault(index, []).append(space.cstring(name_at, f"export name {i}"))
    exports = []
    for index, address in enumerate(addresses):
        if address == 0:
            continue  # a hole in the ordinal range
        forwarder = None
        if rva <= address < rva + size:
            forwarder = space.cstring(address, f"forwarder of export {base + index}")
        # A function may have several names (aliases) or none (exported by ordinal only).
        for name in names_of.get(index, [None]):
            exports.append(Export(name, base + index, address, forwarder))
    return space.cstring(name_rva, "DLL name"), tuple(exports)


def _file_version(space: _Space, root: int) -> str | None:
    """FileVersion from VS_FIXEDFILEINFO in the first RT_VERSION resource. A version that
    cannot be read is None, not an error: it labels the build, the timestamp and size
    identify it, so a damaged resource must not cost the export table."""
    try:
        return _fixed_file_version(space, root)
    except PeError:
        return None


def _fixed_file_version(space: _Space, root: int) -> str | None:
    node = root
    for level, wanted in enumerate((_RT_VERSION, None, None)):  # type, name, language
        child = _resource_child(space, root, node, wanted, level)
        if child is None:
            return None
        node = child
    data_rva, data_size = space.unpack(_RESOURCE_DATA, node, "version resource entry")
    blob = space.read(data_rva, min(data_size, 4096), "version resource")
    at = blob.find(_FIXED_FILE_INFO_SIGNATURE)
    if at < 0 or at + _FIXED_FILE_INFO.size > len(blob):
        return None
    _, _, ms, ls = _FIXED_FILE_INFO.unpack_from(blob, at)
    return f"{ms >> 16}.{ms & 0xFFFF}.{ls >> 16}.{ls & 0xFFFF}"


def _resource_child(
    space: _Space, root: int, directory: int, wanted: int | None, level: int
) -> int | None:
    """The RVA of the entry ``wanted`` (by id; any when None) of a resource directory:
    another directory on the first two levels, a data entry on the last."""
    named, ids = space.unpack(_RESOURCE_DIRECTORY, directory, "resource directory")
    if named + ids > _MAX_RESOURCE_ENTRIES:
        raise PeError(f"resource directory at RVA {directory:#x}: {named + ids} entries")
    for i in range(named + ids):
        ident, offset = space.unpack(_RESOURCE_ENTRY, directory + 16 + 8 * i, "resource entry")
        if wanted is not None and (ident & 0x8000_0000 or ident != wanted):
            continue
        is_directory = bool(offset & 0x8000_0000)
        if is_directory != (level < 2):
            raise PeError(f"resource entry at RVA {directory + 16 + 8 * i:#x}: wrong kind")
        return int(root + (offset & 0x7FFF_FFFF))
    return None
