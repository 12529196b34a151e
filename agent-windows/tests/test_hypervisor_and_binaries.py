import struct

import pytest
from reprofarm_agent.binaries import binary_target
from reprofarm_agent.hypervisor import classify_hypervisor


@pytest.mark.parametrize(
    ("strings", "expected"),
    [
        (["Microsoft Corporation", "Virtual Machine"], "hyper-v"),
        (["Microsoft Corporation", "Surface Laptop 7"], "none"),
        (["VMware, Inc.", "VMware20,1"], "vmware"),
        (["innotek GmbH", "VirtualBox"], "virtualbox"),
        (["QEMU", "Standard PC (Q35 + ICH9, 2009)"], "kvm"),
        (["Parallels Software International Inc.", "Parallels ARM Virtual Machine"], "parallels"),
        (["Dell Inc.", "XPS 13"], "none"),
    ],
)
def test_vendor_strings_name_the_hypervisor(strings, expected):
    assert classify_hypervisor(strings, hypervisor_present=False) == expected


def pe_header(machine: int) -> bytes:
    head = bytearray(0x80)
    head[:2] = b"MZ"
    struct.pack_into("<I", head, 0x3C, 0x40)
    head[0x40:0x44] = b"PE\0\0"
    struct.pack_into("<H", head, 0x44, machine)
    return bytes(head)


def elf_header(machine: int) -> bytes:
    head = bytearray(0x40)
    head[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<H", head, 0x12, machine)
    return bytes(head)


@pytest.mark.parametrize(
    ("header", "target"),
    [
        (pe_header(0xAA64), "windows/arm64"),
        (pe_header(0x8664), "windows/amd64"),
        (elf_header(0xB7), "linux/arm64"),
        (elf_header(0x3E), "linux/amd64"),
        (b"#!/bin/sh\n", "unknown"),
        (b"MZ", "unknown"),
    ],
)
def test_binary_headers_name_their_target(header, target):
    assert binary_target(header) == target
