"""Reading which OS and machine a binary was built for, from its header.

The build checks its output with this (a windows/arm64 build must be a PE for
ARM64), and the agent records the binary's arch apart from the machine's: an
x64 hangtest emulated on ARM64 is a configuration of its own.
"""

from __future__ import annotations

import struct
from pathlib import Path

# IMAGE_FILE_MACHINE_* values (winnt.h); IsWow64Process2 reports the same codes.
PE_MACHINES: dict[int, str] = {
    0x014C: "386",
    0x8664: "amd64",
    0xAA64: "arm64",
    0x01C4: "arm",
}

# ELF e_machine values (System V ABI).
_ELF_MACHINES: dict[int, str] = {0x03: "386", 0x3E: "amd64", 0xB7: "arm64", 0x28: "arm"}


def machine_name(code: int) -> str:
    """Name of an IMAGE_FILE_MACHINE code, ``unknown(0x....)`` for others."""
    return PE_MACHINES.get(code, f"unknown(0x{code:04x})")


def binary_target(header: bytes) -> str:
    """``GOOS/GOARCH`` of an executable from its first bytes (4 KiB suffice),
    or ``unknown`` when the header is neither a PE nor an ELF file."""
    if header[:2] == b"MZ" and len(header) >= 0x40:
        (pe_offset,) = struct.unpack_from("<I", header, 0x3C)
        if len(header) >= pe_offset + 6 and header[pe_offset : pe_offset + 4] == b"PE\0\0":
            (machine,) = struct.unpack_from("<H", header, pe_offset + 4)
            return f"windows/{machine_name(machine)}"
    if header[:4] == b"\x7fELF" and len(header) >= 0x14:
        order = "<" if header[5] == 1 else ">"
        (machine,) = struct.unpack_from(order + "H", header, 0x12)
        return f"linux/{_ELF_MACHINES.get(machine, f'unknown(0x{machine:x})')}"
    return "unknown"


def read_binary_target(path: Path) -> str:
    with path.open("rb") as f:
        return binary_target(f.read(4096))
