"""agents_load.py's generator processes: every agent in exactly one, their
measurements merged into one report, and a run judged by its worst process."""

import pickle

from load_agent import LeaseSeen
from load_fleet import FleetSpec
from load_generators import Generators, default_generators, share
from load_metrics import Recorder, percentile
from load_report import worst_lag_p99


def _spec(agents: int = 10) -> FleetSpec:
    return FleetSpec(
        agents=agents,
        api_urls=["http://127.0.0.1:1"],
        enrollment="enroll",
        hardware_configs=300,
        ramp_s=1.0,
        wait_s=50.0,
        heartbeat_s=15.0,
        run_s=(30.0, 90.0),
        hang_fraction=0.0,
        artifact=b"dump",
        ingest=False,
        ingest_batch=1,
    )


def test_merged_recorders_give_percentiles_over_the_union_and_summed_counts():
    a, b = Recorder(), Recorder()
    for ms in range(1, 51):
        a.ok("heartbeat", float(ms))
    for ms in range(51, 101):
        b.ok("heartbeat", float(ms))
    a.failed("lease", "503", 10.0, "first")
    b.failed("lease", "503", 20.0, "second")
    b.failed("result", "ReadTimeout", 60_000.0, "timeout")

    a.absorb(pickle.loads(pickle.dumps(b)))  # as it crosses the pipe

    assert (a.p("heartbeat", 50), a.p("heartbeat", 99)) == (50.0, 99.0)
    assert a.errors == {("lease", "503"): 2, ("result", "ReadTimeout"): 1}
    assert a.failed_ms["lease"] == [10.0, 20.0]
    assert a.examples[("lease", "503")] == "first"
    assert a.requests == 103


def test_merged_loads_sum_counts_join_leases_and_keep_the_first_exhaustion():
    spec = _spec()
    parent, first, second = spec.new_load(), spec.new_load(), spec.new_load()
    first.registered, first.results, first.leased_first_attempts = 5, 3, 4
    first.leases.append(LeaseSeen(run_id=1, sent=0.0, received=1.0, claimed=0.5))
    first.abandoned.add(1)
    second.registered, second.results, second.exhausted_at = 5, 2, 42.0

    for child in (first, second):
        parent.absorb(pickle.loads(pickle.dumps(child)))

    assert (parent.registered, parent.results, parent.leased_first_attempts) == (10, 5, 4)
    assert [seen.run_id for seen in parent.leases] == [1]
    assert parent.abandoned == {1}
    assert parent.exhausted_at == 42.0


def test_every_agent_belongs_to_exactly_one_generator():
    for agents, generators in [(1, 1), (10, 3), (2000, 1), (10_000, 4), (10_001, 5)]:
        shares = [share(agents, generators, k) for k in range(generators)]
        indices = [i for s in shares for i in s]
        assert sorted(indices) == list(range(agents)), (agents, generators)
        assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1


def test_default_is_one_generator_up_to_2500_agents_then_one_per_2500():
    assert [default_generators(n) for n in (1, 2000, 2500, 2501, 10_000)] == [1, 1, 1, 2, 4]


def test_a_run_is_judged_by_its_worst_process_not_the_union_of_samples():
    quiet = [1.0] * 100
    lagging = [1.0] * 97 + [200.0] * 3  # its p99 is 200 ms
    lags = {"parent": quiet, "generator-0": quiet, "generator-1": quiet, "generator-2": lagging}

    assert worst_lag_p99(lags) == 200.0
    # The union's p99 would have called this run valid.
    assert percentile(sorted(quiet * 3 + lagging), 99) == 1.0


def test_the_board_adds_up_what_each_generator_published():
    spec = _spec()
    generators = Generators(spec, 2)  # not started: only its board is read
    first, second = spec.new_load(), spec.new_load()
    first.registered, first.busy, first.exhausted_at = 3, 1, 7.0
    first.rec.ok("register", 1.0)
    second.registered, second.busy = 4, 2
    second.rec.failed("register", "503", 1.0)

    generators.board.publish(0, first, finished=True)
    generators.board.publish(1, second, finished=False)

    assert (generators.registered, generators.busy) == (7, 3)
    assert (generators.requests, generators.errors) == (2, 1)
    assert generators.exhausted_at == 7.0
    assert not generators.finished
