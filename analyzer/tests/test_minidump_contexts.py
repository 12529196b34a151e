"""CONTEXT decoding. No public ARM64 Windows minidump exists, so the ARM64 record here is
built field by field from the ARM64_NT_CONTEXT layout documented in winnt.h, not taken from
a machine: the first real ARM64 dump a lab agent writes should be added as a fixture."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reprofarm_analyzer.contexts import (
    AMD64_CONTEXT_SIZE,
    ARM64_CONTEXT_SIZE,
    X86_CONTEXT_SIZE,
    ContextError,
    decode_context,
)

CONTEXT_ARM64 = 0x0040_0000
CONTEXT_AMD64 = 0x0010_0000
CONTEXT_I386 = 0x0001_0000


def arm64_context(*, x: list[int], fp: int, lr: int, sp: int, pc: int) -> bytes:
    """ARM64_NT_CONTEXT in winnt.h order: ContextFlags, Cpsr, X0..X28, Fp, Lr, Sp, Pc,
    V[32] (128-bit NEON128), Fpcr, Fpsr, Bcr[8], Bvr[8] (64-bit), Wcr[2], Wvr[2] (64-bit)."""
    assert len(x) == 29
    head = struct.pack("<II29QQQQQ", CONTEXT_ARM64 | 0x7, 0x6000_0000, *x, fp, lr, sp, pc)
    neon = bytes(range(256)) * 2  # V0..V31, 512 bytes of recognisable filler
    tail = struct.pack("<II8I8Q2I2Q", 0, 0, *[0xB] * 8, *[0xBB] * 8, 0xC, 0xC, 0xCC, 0xCC)
    return head + neon + tail


def test_arm64_record_built_from_winnt_h_has_the_documented_size() -> None:
    raw = arm64_context(x=list(range(29)), fp=1, lr=2, sp=3, pc=4)
    assert len(raw) == ARM64_CONTEXT_SIZE == 0x390


def test_arm64_pc_sp_and_fp_come_from_their_documented_fields() -> None:
    raw = arm64_context(
        x=[0x1000 + i for i in range(29)],
        fp=0x0000_00E0_1234_5F00,
        lr=0x7FFB_0B13_0040,
        sp=0x0000_00E0_1234_5E80,
        pc=0x7FFB_0B1A_0994,
    )
    registers = decode_context(raw, "arm64")
    assert registers.arch == "arm64"
    assert registers.ip == 0x7FFB_0B1A_0994
    assert registers.sp == 0x0000_00E0_1234_5E80
    assert registers.frame == 0x0000_00E0_1234_5F00


def test_arm64_flags_win_over_a_system_info_that_says_amd64() -> None:
    # An x64 process emulated on ARM64 is dumped with the native machine's records.
    raw = arm64_context(x=[0] * 29, fp=0, lr=0, sp=0x10, pc=0x20)
    assert decode_context(raw, "amd64").arch == "arm64"


def test_amd64_rip_is_at_0xf8() -> None:
    raw = bytearray(AMD64_CONTEXT_SIZE)
    struct.pack_into("<I", raw, 0x30, CONTEXT_AMD64 | 0x1F)
    struct.pack_into("<QQ", raw, 0x98, 0xE0_0000_1000, 0xE0_0000_2000)  # Rsp, Rbp
    struct.pack_into("<Q", raw, 0xF8, 0x7FFB_0B1D_0994)
    registers = decode_context(bytes(raw), None)
    assert (registers.arch, registers.ip) == ("amd64", 0x7FFB_0B1D_0994)
    assert (registers.sp, registers.frame) == (0xE0_0000_1000, 0xE0_0000_2000)


def test_x86_eip_esp_ebp() -> None:
    raw = bytearray(X86_CONTEXT_SIZE)
    struct.pack_into("<I", raw, 0, CONTEXT_I386 | 0x7)
    struct.pack_into("<II", raw, 0xB4, 0x0061_FC00, 0x7780_6AAC)  # Ebp, Eip
    struct.pack_into("<I", raw, 0xC4, 0x0061_FBD8)  # Esp
    registers = decode_context(bytes(raw), "386")
    assert (registers.ip, registers.sp, registers.frame) == (0x7780_6AAC, 0x0061_FBD8, 0x0061_FC00)


def test_zeroed_flags_fall_back_to_the_dump_architecture() -> None:
    raw = bytearray(AMD64_CONTEXT_SIZE)
    struct.pack_into("<Q", raw, 0xF8, 0x1234)
    assert decode_context(bytes(raw), "amd64").ip == 0x1234
    with pytest.raises(ContextError, match="no architecture in its flags"):
        decode_context(bytes(raw), None)


def test_short_record_is_a_context_error() -> None:
    raw = struct.pack("<II", CONTEXT_ARM64, 0) + bytes(0x100)
    with pytest.raises(ContextError, match="arm64 context is 264 bytes"):
        decode_context(raw, "arm64")


@given(st.binary(max_size=0x500), st.sampled_from(["amd64", "arm64", "386", "arm", None]))
def test_any_bytes_decode_or_raise_context_error(raw: bytes, arch: str | None) -> None:
    with contextlib.suppress(ContextError):
        decode_context(raw, arch)
