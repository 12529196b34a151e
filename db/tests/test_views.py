"""The dashboard's read models give the statistics' own numbers: a tally of the runs
equals stats.group_runs on random histories, a filter pinned through group keys
equals the same filter pushed into SQL, and the "what changed" tokens move when a
page's data does and only then."""

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from reprofarm_db import claims, leases, stats, views
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.models import Agent, Base, HardwareConfig, Job
from reprofarm_protocol.runs import RunStatus

from db.tests.test_leases import T0, make_ready_job, result
from db.tests.test_rollups import STEPS, _rows, play
from tests.factories import fake_build, register_agent

EPOCH = T0 - timedelta(days=3650)  # a time range that holds every job: a tally answers
GROUPINGS = [
    ["hardware"],
    ["hardware", "cpus"],
    ["cpus", "affinity"],
    ["scenario", "go_version"],
    ["hardware", "go_version", "cpus", "affinity"],
    ["label"],
    ["signature", "pool"],
]


def _random_farm(tmp_path_factory, steps):
    url = f"sqlite:///{tmp_path_factory.mktemp('views') / 'db.sqlite'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as s:
        agent_ids = [
            register_agent(s, "a", cpus=2)[0].id,
            register_agent(s, "b", cpus=4, arch="amd64")[0].id,
        ]
        make_ready_job(s, repeats=3, cpus=[1, 2], affinities=["compact", "spread"])
    with transaction(sessions) as s:
        play(s, steps, agent_ids, {}, T0)
    return engine, sessions


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_a_tally_gives_the_statistics_rows_on_random_histories(tmp_path_factory, steps):
    engine, sessions = _random_farm(tmp_path_factory, steps)
    try:
        with transaction(sessions) as s:
            for keys in GROUPINGS:
                for label in (None, "pending", "cancelioex-sync-io"):
                    scan = stats.group_runs(s, group_by=keys, label=label, source="scan")
                    tallied = views.rates(
                        s, group_by=keys, where=views.RunFilter(label=label, submitted_since=EPOCH)
                    )
                    assert _rows(tallied) == _rows(scan), (keys, label)
    finally:
        engine.dispose()


def test_a_pinned_filter_gives_the_rows_of_the_filtered_runs(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a", cpus=2)
        make_ready_job(s, repeats=2, cpus=[1, 2])
        fake_build(s, target="windows/arm64", go_version="1.26.4")
        make_ready_job(s, repeats=1, cpus=[1], go_versions=["1.26.4"])
    with transaction(sessions) as s:
        agent = s.get(Agent, a.id)
        for i in range(5):
            claimed = claims.claim_objects(s, agent=agent, now=T0, lease_s=60, avoid_grace_s=0)
            assert claimed is not None
            run, _build, secret = claimed
            status = RunStatus.HUNG if i % 2 else RunStatus.PASSED
            leases.record_result(
                s, agent=agent, run_id=run.id, lease_token=secret, report=result(status), now=T0
            )
    with transaction(sessions) as s:
        fingerprint = s.get(HardwareConfig, agent.hardware_config_id).fingerprint
        for where in (
            views.RunFilter(go_version="1.27.3"),
            views.RunFilter(go_version="1.26.4", scenario="control-deadlock"),
            views.RunFilter(hardware=fingerprint),
        ):
            pinned = views.rates(s, group_by=["hardware", "cpus"], where=where)
            pushed = views.tally(s, group_by=["hardware", "cpus"], where=where)
            assert _rows(pinned) == _rows([t.row() for t in pushed]), where
        (only,) = views.rates(s, group_by=["cpus"], where=views.RunFilter(go_version="1.26.4"))
        assert (only.keys, only.counts.runs) == ({"cpus": 1}, 1)


def test_submitted_since_keeps_only_the_runs_of_later_jobs(sessions):
    with transaction(sessions) as s:
        register_agent(s, "a", cpus=2)
        old = make_ready_job(s, repeats=2)
        new = make_ready_job(s, repeats=3)
        old.created_at = T0 - timedelta(days=10)
        new.created_at = T0
    with transaction(sessions) as s:
        counts = {
            since: sum(
                sum(t.by_status.values())
                for t in views.tally(
                    s, group_by=["scenario"], where=views.RunFilter(submitted_since=since)
                )
            )
            for since in (T0 - timedelta(days=30), T0 - timedelta(days=1), T0 + timedelta(days=1))
        }
        assert list(counts.values()) == [5, 3, 0]
        assert s.get(Job, new.id) is not None


def test_changes_move_when_a_run_finishes_and_stay_still_otherwise(sessions):
    with transaction(sessions) as s:
        a, _ = register_agent(s, "a", cpus=2)
        make_ready_job(s, repeats=2)
    since = T0 - timedelta(minutes=2)
    with transaction(sessions) as s:
        before = views.changes(s, online_since=since)
        assert views.changes(s, online_since=since) == before, "nothing changed"
        agent = s.get(Agent, a.id)
        run, _build, secret = claims.claim_objects(
            s, agent=agent, now=T0, lease_s=60, avoid_grace_s=0
        )
    with transaction(sessions) as s:
        leased = views.changes(s, online_since=since)
        assert leased["runs"] != before["runs"], "a lease moves the runs token"
        assert leased["jobs"] == before["jobs"]
        assert leased["agents"] != before["agents"], "the agent is busy with the run"
        leases.record_result(
            s,
            agent=s.get(Agent, a.id),
            run_id=run.id,
            lease_token=secret,
            report=result(),
            now=T0,
        )
    with transaction(sessions) as s:
        finished = views.changes(s, online_since=since)
        assert finished["runs"] != leased["runs"], "a hang moves the runs token"
        assert finished["agents"] != leased["agents"], "the agent is idle again"
