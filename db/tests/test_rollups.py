"""The statistics rollups are exact: on random histories made with the real business
functions (leases, results, lost leases and their retries, late results, cancels,
analyses that relabel runs, agents falling ill mid-run and healing, bug hangs on a
negative control: the last two are in no cell), the incremental counters, a rebuild from
the runs table and a full scan give the same numbers for every grouping."""

from datetime import timedelta
from itertools import combinations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reprofarm_db import analyses, claims, health, jobs, leases, pools, rollups, stats
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.models import Agent, Base
from reprofarm_protocol.analysis import Label
from reprofarm_protocol.controls import CheckKind, CheckOutcome, CheckTrigger, PoolControls
from reprofarm_protocol.runs import RunStatus

from db.tests.test_leases import T0, make_ready_job, result
from tests.factories import register_agent

STEPS = st.lists(
    st.tuples(
        st.sampled_from(["result", "lose", "late", "cancel", "relabel", "submit", "sick", "heal"]),
        st.sampled_from(list(RunStatus)),
        st.sampled_from(list(Label)),
        st.integers(0, 2),
    ),
    max_size=25,
)
KEY_SETS = [
    [*keys]
    for n in (1, 2, 5)
    for keys in combinations(
        [
            "hardware",
            "cpus",
            "affinity",
            "go_version",
            "scenario",
            "pool",
            "agent",
            "label",
            "control_chance",
        ],
        n,
    )
][::8]  # 22 groupings of one, two and five keys


def _rows(rows):
    return sorted(
        (
            tuple(sorted((k, str(v)) for k, v in r.keys.items())),
            r.counts.runs,
            r.counts.hangs,
            r.counts.passed,
            r.counts.failed,
            r.counts.errors,
            r.counts.lost,
            r.counts.iterations,
            round(r.counts.run_seconds, 6),
            r.spread.agents,
            round(r.spread.hangs_sq_per_run, 6),
            round(r.spread.inverse_runs, 9),
        )
        for r in rows
    )


def play(s, steps, agent_ids, tokens_by_run, now):
    """Apply one random history through the business functions."""
    for action, status, label, who in steps:
        agent = s.get(Agent, agent_ids[who % len(agent_ids)])
        if action == "submit":  # with a chance axis, or with hangtest's default (NULL)
            chances = {"control_chance": [0, 1e-3]} if who else {}
            scenario = "pipe-close-race" if who == 2 else "control-deadlock"  # b: a negative
            make_ready_job(
                s,
                scenario=scenario,
                repeats=2,
                cpus=[1, 2],
                affinities=["compact", "spread"],
                **chances,
            )
            continue
        if action == "heal":
            _check(s, agent, CheckOutcome.PASSED, now)
            continue
        if action == "cancel":
            for job in jobs.list_(s, limit=1):
                if job.status not in ("done", "cancelled", "expired"):
                    jobs.cancel(s, job_id=job.id)
            continue
        claimed = claims.claim_objects(s, agent=agent, now=now, lease_s=60, avoid_grace_s=0)
        if claimed is None:
            continue
        run, _build, secret = claimed
        tokens_by_run[run.id] = secret
        if action == "sick":  # its check fails while it runs: the run it finishes is discounted
            _check(s, agent, CheckOutcome.FAILED, now)
        if action == "lose" or action == "late":
            run.lease_expires_at = now - timedelta(seconds=1)
            s.flush()
            leases.sweep(s, now=now, max_attempts=3)
            if action == "late":
                leases.record_result(
                    s,
                    agent=agent,
                    run_id=run.id,
                    lease_token=secret,
                    report=result(status),
                    now=now,
                )
            continue
        leases.record_result(
            s, agent=agent, run_id=run.id, lease_token=secret, report=result(status), now=now
        )
        if action == "relabel" and status is RunStatus.HUNG:
            analyses.label_run(s, run_id=run.id, label=label, signature=f"{label.value}:x{who}")


def _check(s, agent, outcome, now):
    check = health.start(
        s,
        agent=agent,
        kind=CheckKind.CANARY,
        trigger=CheckTrigger.MANUAL,
        controls=PoolControls(),
        now=now,
        max_runs=100,
    )
    health.conclude(s, check=check, outcome=outcome, detail="", now=now)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_incremental_rebuild_and_scan_agree_on_random_histories(tmp_path_factory, steps):
    url = f"sqlite:///{tmp_path_factory.mktemp('rollups') / 'db.sqlite'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)  # the migrations are tested elsewhere; this is faster
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as s:
        agent_ids = [
            register_agent(s, "a", cpus=2)[0].id,
            register_agent(s, "b", cpus=4, arch="amd64", pools=["wine"])[0].id,
        ]
        pools.set_(s, name="wine", controls=PoolControls(negative_control=True), by="test")
        make_ready_job(s, repeats=3, cpus=[1, 2], affinities=["compact", "spread"])
    with transaction(sessions) as s:
        play(s, steps, agent_ids, {}, T0)
    try:
        with transaction(sessions) as s:
            incremental = rollups.cells(s)
            for keys in KEY_SETS:
                for label in (None, "pending"):
                    scan = stats.group_runs(s, group_by=keys, label=label, source="scan")
                    rolled = stats.group_runs(s, group_by=keys, label=label, source="rollups")
                    assert _rows(rolled) == _rows(scan), (keys, label)
            rollups.rebuild(s)
            assert rollups.cells(s) == incremental
    finally:
        engine.dispose()


def test_a_relabelled_hang_moves_between_label_cells(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a")
        make_ready_job(s)
    with transaction(sessions) as s:
        agent = s.get(Agent, a.id)
        run, _build, secret = claims.claim_objects(
            s, agent=agent, now=T0, lease_s=60, avoid_grace_s=0
        )
        leases.record_result(
            s, agent=agent, run_id=run.id, lease_token=secret, report=result(), now=T0
        )
        run_id = run.id
    with transaction(sessions) as s:
        (row,) = stats.group_runs(s, group_by=["label"])
        assert (row.keys["label"], row.counts.hangs) == ("pending", 1)
        analyses.label_run(
            s, run_id=run_id, label=Label.CANCELIOEX_SYNC_IO, signature="cancelioex-sync-io:x"
        )
    with transaction(sessions) as s:
        (row,) = stats.group_runs(s, group_by=["label", "signature"])
        assert (row.keys["label"], row.keys["signature"]) == (
            "cancelioex-sync-io",
            "cancelioex-sync-io:x",
        )
        assert (row.counts.runs, row.counts.hangs) == (1, 1)
