"""Decoding of Windows API results. The buffers are built field by field from
the documented layouts of winnt.h, as GetLogicalProcessorInformationEx lays
them out on a 64-bit Windows."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reprofarm_agent.errors import PlacementError, ProbeError
from reprofarm_agent.platform.windows_facts import (
    RELATION_CACHE,
    RELATION_GROUP,
    RELATION_NUMA_NODE,
    RELATION_PROCESSOR_CORE,
    RELATION_PROCESSOR_PACKAGE,
    affinity_mask_for,
    native_arch,
    parse_processor_information,
    product_name,
)
from reprofarm_protocol.hardware import CpuInfo

LTP_PC_SMT = 1


def group_affinity(mask, group=0):
    return struct.pack("<QH6x", mask, group)


def processor_record(relation, masks, efficiency=0, flags=0):
    body = struct.pack("<BB20xH", flags, efficiency, len(masks)) + b"".join(
        group_affinity(m, g) for m, g in masks
    )
    return struct.pack("<II", relation, 8 + len(body)) + body


def numa_record(node, mask, group=0):
    body = struct.pack("<I18xH", node, 1) + group_affinity(mask, group)
    return struct.pack("<II", RELATION_NUMA_NODE, 8 + len(body)) + body


def cache_record():
    body = bytes(24) + group_affinity(0xFF)
    return struct.pack("<II", RELATION_CACHE, 8 + len(body)) + body


def group_record():
    body = struct.pack("<HH20x", 1, 1) + struct.pack("<BB38xQ", 8, 8, 0xFF)
    return struct.pack("<II", RELATION_GROUP, 8 + len(body)) + body


def hybrid_buffer():
    """A 12th-gen-like layout: 2 P-cores with SMT (CPUs 0-3, class 1) and
    4 E-cores (CPUs 4-7, class 0), one package, one NUMA node."""
    records = [
        processor_record(RELATION_PROCESSOR_CORE, [(0b11, 0)], efficiency=1, flags=LTP_PC_SMT),
        processor_record(RELATION_PROCESSOR_CORE, [(0b1100, 0)], efficiency=1, flags=LTP_PC_SMT),
        *(processor_record(RELATION_PROCESSOR_CORE, [(1 << i, 0)]) for i in range(4, 8)),
        cache_record(),
        processor_record(RELATION_PROCESSOR_PACKAGE, [(0xFF, 0)]),
        numa_record(0, 0xFF),
        group_record(),
    ]
    return b"".join(records)


def test_hybrid_topology_decodes_cores_and_efficiency_classes():
    cpus = parse_processor_information(hybrid_buffer())
    assert [c.index for c in cpus] == list(range(8))
    assert [c.core for c in cpus] == [0, 0, 1, 1, 2, 3, 4, 5]
    assert [c.efficiency_class for c in cpus] == [1, 1, 1, 1, 0, 0, 0, 0]
    assert {c.package for c in cpus} == {0}


def test_two_numa_nodes_and_two_groups_are_kept_apart():
    records = [
        processor_record(RELATION_PROCESSOR_CORE, [(0b1, 0)]),
        processor_record(RELATION_PROCESSOR_CORE, [(0b1, 1)]),
        processor_record(RELATION_PROCESSOR_PACKAGE, [(0b1, 0)]),
        processor_record(RELATION_PROCESSOR_PACKAGE, [(0b1, 1)]),
        numa_record(0, 0b1, group=0),
        numa_record(1, 0b1, group=1),
    ]
    cpus = parse_processor_information(b"".join(records))
    assert [(c.group, c.index, c.package, c.numa_node) for c in cpus] == [
        (0, 0, 0, 0),
        (1, 0, 1, 1),
    ]


@pytest.mark.parametrize(
    ("buf", "message"),
    [
        (b"", "no processor core record"),
        (b"\x00\x00\x00", "truncated header"),
        (struct.pack("<II", RELATION_PROCESSOR_CORE, 0), "bad record size 0"),
        (struct.pack("<II", RELATION_PROCESSOR_CORE, 400), "bad record size 400"),
        (struct.pack("<II", RELATION_PROCESSOR_CORE, 16) + bytes(8), "short processor record"),
        (
            struct.pack("<II", RELATION_PROCESSOR_CORE, 32) + struct.pack("<BB20xH", 0, 0, 3),
            "runs past its record",
        ),
    ],
)
def test_damaged_buffers_are_refused(buf, message):
    with pytest.raises(ProbeError, match=message):
        parse_processor_information(buf)


@st.composite
def topologies(draw):
    """A machine as Windows describes it: cores of 1-2 threads with an
    efficiency class, spread over 1-2 processor groups, 1-2 packages and NUMA
    nodes; the records in any order, with cache and group records between.
    Returns (buffer, the CpuInfo list it must decode to)."""
    cores = draw(st.lists(st.tuples(st.integers(1, 2), st.integers(0, 1)), min_size=1, max_size=12))
    groups = draw(st.integers(1, 2))
    expected, records, next_index = [], [], [0] * groups
    for core_id, (threads, efficiency) in enumerate(cores):
        group = core_id % groups
        first = next_index[group]
        next_index[group] += threads
        mask = ((1 << threads) - 1) << first
        flags = LTP_PC_SMT if threads > 1 else 0
        records.append(
            processor_record(RELATION_PROCESSOR_CORE, [(mask, group)], efficiency, flags)
        )
        expected += [
            CpuInfo(index=first + t, group=group, core=core_id, efficiency_class=efficiency)
            for t in range(threads)
        ]
    packages = []
    others = [cache_record(), group_record()]
    for package in range(groups):  # one package and one NUMA node per group
        mask = (1 << next_index[package]) - 1
        packages.append(processor_record(RELATION_PROCESSOR_PACKAGE, [(mask, package)]))
        others.append(numa_record(package, mask, group=package))
    # Cores and packages are numbered in the order of their records; NUMA
    # nodes carry their number. So only the kinds interleave at random.
    kinds = draw(st.permutations(["c"] * len(records) + ["p"] * groups + ["o"] * len(others)))
    queues = {"c": iter(records), "p": iter(packages), "o": iter(others)}
    arranged = [next(queues[kind]) for kind in kinds]
    expected = [c.model_copy(update={"package": c.group, "numa_node": c.group}) for c in expected]
    return b"".join(arranged), sorted(expected, key=lambda c: (c.group, c.index))


@given(topologies())
def test_generated_topologies_decode_to_their_cpus(case):
    buf, expected = case
    assert parse_processor_information(buf) == expected


@given(topologies(), st.data())
def test_damaged_buffers_decode_or_raise_probe_error_naming_the_buffer(case, data):
    buf, _ = case
    cut = data.draw(st.one_of(st.just(len(buf)), st.integers(0, len(buf))))
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, len(buf) - 1), st.integers(0, 255)), max_size=4)
    )
    damaged = bytearray(buf[:cut])
    for at, value in flips:
        if at < len(damaged):
            damaged[at] = value
    try:
        cpus = parse_processor_information(bytes(damaged))
    except ProbeError as exc:
        error = str(exc)
    else:
        error = None
    if error is not None:
        assert error.startswith("processor information: "), error
        return
    assert cpus == sorted(cpus, key=lambda c: (c.group, c.index))
    assert all(0 <= c.index < 64 for c in cpus), "an index beyond a 64-bit group mask"


@pytest.mark.parametrize(
    ("native", "arch_code", "expected"),
    [
        (0xAA64, None, "arm64"),  # x64 Python emulated on ARM64 still learns arm64
        (0x8664, None, "amd64"),
        (None, 12, "arm64"),  # GetNativeSystemInfo fallback
        (None, 9, "amd64"),
        (0x1234, None, "unknown(0x1234)"),
    ],
)
def test_native_arch_comes_from_the_native_machine(native, arch_code, expected):
    assert native_arch(native, arch_code) == expected


def test_native_arch_without_any_source_is_an_error():
    with pytest.raises(ProbeError):
        native_arch(None, None)


def test_windows_11_is_named_from_its_build():
    assert product_name("Windows 10 Pro", 26100) == "Windows 11 Pro"
    assert product_name("Windows 10 Pro", 19045) == "Windows 10 Pro"
    assert product_name("Windows Server 2022 Datacenter", 20348).startswith("Windows Server")


def test_affinity_mask_sets_one_bit_per_cpu():
    assert affinity_mask_for((0, 2, 63)) == (1 << 63) | 0b101
    with pytest.raises(PlacementError, match="CPU 64"):
        affinity_mask_for((64,))
