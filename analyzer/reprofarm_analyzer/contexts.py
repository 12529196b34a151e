"""Registers out of a thread's raw CONTEXT record: where it runs (instruction pointer), its
stack pointer and, where the ABI has one, its frame pointer.

Why a separate decoder: the minidump reader keeps contexts raw, and ARM64 is the platform
the hang was first seen on, yet no public tool in Python decodes an ARM64 Windows context.
Offsets below come from winnt.h: ``CONTEXT`` for x86 and AMD64, ``ARM64_NT_CONTEXT`` for
ARM64 (``ContextFlags``, ``Cpsr``, ``X0``..``X28``, ``Fp``, ``Lr``, ``Sp``, ``Pc``, ``V[32]``,
``Fpcr``, ``Fpsr``, ``Bcr[8]``, ``Bvr[8]``, ``Wcr[2]``, ``Wvr[2]``: 0x390 bytes) and
``CONTEXT`` for 32-bit ARM. No real ARM64 minidump is public, so the ARM64 offsets are tested
against that documented layout only (see docs/analyzer.md).

Which layout: the architecture bits of ``ContextFlags`` say which CONTEXT a record is; they
win over the dump's SystemInfo, since an emulated process (x64 on ARM64) can carry contexts
of another architecture than the machine's. SystemInfo decides only when the flags do not.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class ContextError(ValueError):
    """A CONTEXT record too short for its architecture, or of an unknown architecture."""


@dataclass(frozen=True, slots=True)
class Registers:
    """What the triage needs of a thread's CPU state. ``frame`` is None where the ABI has no
    dedicated frame pointer worth trusting."""

    arch: str
    ip: int
    sp: int
    frame: int | None


@dataclass(frozen=True, slots=True)
class _Layout:
    arch: str
    flag: int  # CONTEXT_<ARCH>, the architecture bit of ContextFlags
    flags_offset: int
    minimum_size: int
    ip: tuple[int, str]  # (offset, struct format)
    sp: tuple[int, str]
    frame: tuple[int, str] | None


# x86 CONTEXT: ContextFlags at 0, Ebp 0xB4, Eip 0xB8, Esp 0xC4; 0x2CC bytes with the
# ExtendedRegisters, 0xCC without (old writers stop there).
_X86 = _Layout("386", 0x0001_0000, 0x0, 0xCC, (0xB8, "<I"), (0xC4, "<I"), (0xB4, "<I"))
# AMD64 CONTEXT: six home quadwords, ContextFlags at 0x30, Rsp 0x98, Rbp 0xA0, Rip 0xF8;
# 0x4D0 bytes (more with CONTEXT_XSTATE, which appends a CONTEXT_EX).
_AMD64 = _Layout("amd64", 0x0010_0000, 0x30, 0x100, (0xF8, "<Q"), (0x98, "<Q"), (0xA0, "<Q"))
# ARM64_NT_CONTEXT: ContextFlags 0, Cpsr 4, X0..X28 from 8, Fp 0xF0, Lr 0xF8, Sp 0x100,
# Pc 0x108, V[32] 0x110, Fpcr 0x310, Fpsr 0x314, Bcr 0x318, Bvr 0x338, Wcr 0x378,
# Wvr 0x380; 0x390 bytes.
_ARM64 = _Layout("arm64", 0x0040_0000, 0x0, 0x110, (0x108, "<Q"), (0x100, "<Q"), (0xF0, "<Q"))
# 32-bit ARM CONTEXT: ContextFlags 0, R0..R12 from 4, Sp 0x38, Lr 0x3C, Pc 0x40, Cpsr 0x44;
# R11 (0x30) is the frame pointer in Windows' ARM (Thumb-2) ABI.
_ARM = _Layout("arm", 0x0020_0000, 0x0, 0x48, (0x40, "<I"), (0x38, "<I"), (0x30, "<I"))

_LAYOUTS = (_AMD64, _ARM64, _X86, _ARM)
_BY_ARCH = {layout.arch: layout for layout in _LAYOUTS}

ARM64_CONTEXT_SIZE = 0x390
AMD64_CONTEXT_SIZE = 0x4D0
X86_CONTEXT_SIZE = 0x2CC


def decode_context(raw: bytes, arch: str | None = None) -> Registers:
    """Registers of one CONTEXT record. ``arch`` (``amd64``, ``arm64``, ``386``, ``arm``) is the
    dump's SystemInfo architecture, used when the record's flags name none.

    Raises ``ContextError`` when the record is too short or its architecture unknown."""
    layout = _layout_from_flags(raw) or _BY_ARCH.get(arch or "")
    if layout is None:
        raise ContextError(
            f"context of {len(raw)} bytes: no architecture in its flags, and none known "
            f"for {arch or 'an unknown machine'}"
        )
    if len(raw) < layout.minimum_size:
        raise ContextError(
            f"{layout.arch} context is {len(raw)} bytes, needs at least {layout.minimum_size}"
        )
    frame = _field(raw, layout.frame) if layout.frame else None
    return Registers(
        arch=layout.arch, ip=_field(raw, layout.ip), sp=_field(raw, layout.sp), frame=frame
    )


def _layout_from_flags(raw: bytes) -> _Layout | None:
    """The layout whose architecture bit (and only it) is set in ContextFlags at that
    layout's own offset. Zeroed or garbage flags give None."""
    found = []
    for layout in _LAYOUTS:
        if len(raw) < layout.flags_offset + 4:
            continue
        (flags,) = struct.unpack_from("<I", raw, layout.flags_offset)
        if flags & 0x00FF_0000 == layout.flag:
            found.append(layout)
    return found[0] if len(found) == 1 else None


def _field(raw: bytes, where: tuple[int, str]) -> int:
    offset, fmt = where
    (value,) = struct.unpack_from(fmt, raw, offset)
    return int(value)
