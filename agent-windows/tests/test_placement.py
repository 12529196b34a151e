import pytest
from hypothesis import given
from hypothesis import strategies as st
from reprofarm_agent.errors import PlacementError
from reprofarm_agent.placement import place
from reprofarm_protocol.hardware import CpuInfo


def smt_machine(cores=4, threads=2):
    """Logical CPUs numbered as Linux does on x86: siblings are cores apart."""
    return [CpuInfo(index=t * cores + c, core=c) for c in range(cores) for t in range(threads)]


def hybrid_laptop():
    """2 P-cores with SMT (CPUs 0-3, class 1) and 4 E-cores (CPUs 4-7, class 0)."""
    p = [CpuInfo(index=i, core=i // 2, efficiency_class=1) for i in range(4)]
    e = [CpuInfo(index=4 + i, core=2 + i, efficiency_class=0) for i in range(4)]
    return p + e


def test_compact_fills_a_core_before_the_next():
    assert place(smt_machine(), 2, "compact").cpus == (0, 4)


def test_spread_takes_one_cpu_per_core_first():
    assert place(smt_machine(), 4, "spread").cpus == (0, 1, 2, 3)
    assert place(smt_machine(), 5, "spread").cpus == (0, 1, 2, 3, 4)


def test_pcores_and_ecores_select_their_class():
    assert place(hybrid_laptop(), 2, "pcores").cpus == (0, 2)
    assert place(hybrid_laptop(), None, "ecores").cpus == (4, 5, 6, 7)


def test_ecores_are_refused_on_a_uniform_machine():
    with pytest.raises(PlacementError, match="no efficiency cores"):
        place(smt_machine(), 1, "ecores")


def test_all_uses_every_cpu_and_refuses_another_count():
    assert place(smt_machine(2, 1), None, "all").cpus == (0, 1)
    with pytest.raises(PlacementError, match="affinity all uses every CPU"):
        place(smt_machine(2, 1), 1, "all")


def test_mask_selects_exact_cpus():
    placement = place(smt_machine(), None, "mask:0x0A")
    assert placement.cpus == (1, 3)
    assert placement.mask == 0x0A


@pytest.mark.parametrize(
    ("count", "policy", "message"),
    [
        (9, "compact", "asked for 9 CPUs, this machine has 8 CPUs"),
        (0, "compact", "cpus: must be at least 1"),
        (5, "pcores", "asked for 5 CPUs, this machine has 4 CPUs for affinity pcores"),
        (None, "mask:0x100", "CPU 8 is not usable"),
        (None, "mask:0x0", "selects no CPU"),
        (1, "mask:0x3", "the mask selects 2"),
        (1, "sideways", "'sideways' is not one of compact"),
        (None, "mask:0xZZ", "1 to 16 hex digits"),
    ],
)
def test_impossible_placements_are_refused_with_the_reason(count, policy, message):
    machine = hybrid_laptop() if policy == "pcores" else smt_machine()
    with pytest.raises(PlacementError, match=message):
        place(machine, count, policy)


def test_a_set_never_spans_processor_groups():
    machine = [CpuInfo(index=i % 64, core=i, group=i // 64) for i in range(128)]
    assert place(machine, 64, "compact").group == 0
    with pytest.raises(PlacementError, match="span processor groups"):
        place(machine, 65, "compact")


@given(
    cores=st.integers(1, 16),
    threads=st.integers(1, 4),
    policy=st.sampled_from(["compact", "spread", "pcores", "all"]),
    data=st.data(),
)
def test_placements_are_distinct_usable_cpus_of_the_asked_count(cores, threads, policy, data):
    machine = smt_machine(cores, threads)
    count = None if policy == "all" else data.draw(st.integers(1, cores * threads))
    placement = place(machine, count, policy)
    assert len(set(placement.cpus)) == len(placement.cpus) == (count or cores * threads)
    assert set(placement.cpus) <= {c.index for c in machine}
