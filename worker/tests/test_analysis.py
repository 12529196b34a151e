"""The analysis task bodies on the real Postgres, with real dumps from the corpus:
a completed upload queues its analysis, the run gets its label, an unreadable dump
is recorded without failing anything, and re-analysis after a rules change moves
old runs to the new buckets."""

import contextlib
import gzip
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from reprofarm_analyzer.analysis import analyze_path
from reprofarm_analyzer.goroutine_rules import RULES_VERSION
from reprofarm_analyzer.minidump_analysis import MINIDUMP_RULES_VERSION
from reprofarm_db import analyses, artifacts, builds, claims, jobs, triage
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.models import Agent, ArtifactAnalysis, Outbox, Run, TriagedDump
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.jobs import JobCreate
from reprofarm_protocol.queues import TASK_ANALYZE_ARTIFACT
from reprofarm_worker.analysis import analyze_artifact, reanalyze
from sqlalchemy import event, select

from tests.capabilities import public_minidumps
from tests.factories import FAKE_SOURCE, fake_build, register_agent
from tests.gzip_bomb import write_bomb
from tests.minidump_writer import known_x64_crash

CORPUS = Path(__file__).resolve().parents[2] / "analyzer" / "tests" / "corpus" / "goroutines"
CONTROL_DUMP = CORPUS / "hangtest-control-deadlock-stall-go1.27-linux.txt"
OTHER_DUMP = CORPUS / "golang-go-35774-waitgroup-timeout.txt"


@pytest.fixture
def sessions(postgres_url):
    upgrade(postgres_url)
    return make_sessionmaker(make_engine(postgres_url))


def leased_run(sessions):
    with transaction(sessions) as s:
        agent, _ = register_agent(s, "lab", pools=["p"])
        job, _ = jobs.create(
            s,
            spec=JobCreate(scenario="control-deadlock", pools=["p"], duration_s=5),
            idempotency_key=None,
            max_runs=10,
        )
        fake_build(s)
        builds.mark_ready(s, job=job, source_sha256=FAKE_SOURCE)
    with transaction(sessions) as s:
        run, _build, secret = claims.claim_objects(
            s, agent=s.get(Agent, agent.id), now=datetime.now(UTC), lease_s=60, avoid_grace_s=0
        )
        return agent.id, run.id, secret


def upload(sessions, tmp_path, agent_id, run_id, secret, source, *, kind="goroutines", name=None):
    """What the api does for a complete upload: the row, then the blob."""
    blob = tmp_path / f"blob-{source.name}"
    shutil.copyfile(source, blob)
    with transaction(sessions) as s:
        row, _ = artifacts.open_upload(
            s,
            agent_id=agent_id,
            run_id=run_id,
            lease_token=secret,
            name=name or source.name,
            kind=kind,
            sha256="0" * 64,
            size=blob.stat().st_size,
            path=str(blob),
            limits=artifacts.RunLimits(artifacts=16, bytes=1 << 30),
        )
        artifacts.record_progress(s, artifact_id=row.id, received=row.bytes, blob=str(blob))
        return row.id


def test_a_completed_dump_is_queued_analysed_and_labels_its_run(sessions, tmp_path):
    agent_id, run_id, secret = leased_run(sessions)
    artifact_id = upload(sessions, tmp_path, agent_id, run_id, secret, CONTROL_DUMP)
    with transaction(sessions) as s:
        queued = [(o.task, o.args) for o in s.scalars(select(Outbox).order_by(Outbox.id))]
        assert (TASK_ANALYZE_ARTIFACT, [artifact_id]) in queued
        assert s.get(Run, run_id).label is None  # pending until analysed
    assert analyze_artifact(sessions, artifact_id, tmp_path / "scratch") == "control-deadlock"
    assert analyze_artifact(sessions, artifact_id, tmp_path / "scratch") == "control-deadlock"
    with transaction(sessions) as s:
        run = s.get(Run, run_id)
        assert run.signature.startswith("control-deadlock")
        assert run.signature_key == analyses.signature_key(run.signature)
        (row,) = s.scalars(select(ArtifactAnalysis)).all()  # replaced, not added
        assert (row.label, row.rules_version, row.error) == (
            "control-deadlock",
            RULES_VERSION,
            None,
        )


def test_a_gzipped_dump_is_read_like_the_plain_one(sessions, tmp_path):
    agent_id, run_id, secret = leased_run(sessions)
    packed = tmp_path / "goroutines.txt.gz"
    packed.write_bytes(gzip.compress(CONTROL_DUMP.read_bytes()))
    artifact_id = upload(sessions, tmp_path, agent_id, run_id, secret, packed)
    assert analyze_artifact(sessions, artifact_id, tmp_path / "scratch") == "control-deadlock"


def test_an_unreadable_dump_is_recorded_and_fails_nothing(sessions, tmp_path):
    agent_id, run_id, secret = leased_run(sessions)
    junk = tmp_path / "process-1.42"
    junk.write_bytes(b"\x00not a dump at all" * 100)
    artifact_id = upload(sessions, tmp_path, agent_id, run_id, secret, junk, kind="core")
    assert analyze_artifact(sessions, artifact_id, tmp_path / "scratch") == "other-hang"
    with transaction(sessions) as s:
        row = analyses.for_artifact(s, artifact_id=artifact_id)
        assert row.label is None
        assert "process-1.42" in row.error
        assert s.get(Run, run_id).signature == analyses.UNREADABLE


def test_a_gzip_bomb_is_refused_with_its_reason_and_the_run_keeps_its_status(sessions, tmp_path):
    """2 MB expanding to 2 GiB behind a minidump signature: refused at the settings'
    minidump limit (here lowered to 64 MiB, to be quick), recorded as the artifact's
    error; the run is still leased and its scratch folder empty."""
    agent_id, run_id, secret = leased_run(sessions)
    bomb = tmp_path / "process-1.dmp.gz"
    write_bomb(bomb, head=b"MDMP\x93\xa7", expanded_bytes=2 << 30)
    artifact_id = upload(sessions, tmp_path, agent_id, run_id, secret, bomb, kind="minidump")
    settings = ControllerSettings(data_dir=tmp_path, analysis_max_minidump_bytes=64 << 20)
    scratch = tmp_path / "scratch"
    assert analyze_artifact(sessions, artifact_id, scratch, settings.analysis_limits()) == (
        "other-hang"
    )
    with transaction(sessions) as s:
        row = analyses.for_artifact(s, artifact_id=artifact_id)
        assert row.label is None
        assert row.error.endswith(
            "refused, it expands past 67,108,864 bytes, the limit for a minidump"
        ), row.error
        run = s.get(Run, run_id)
        assert (run.status, run.signature) == ("leased", analyses.UNREADABLE)
    assert list(scratch.iterdir()) == []


def test_reanalysis_after_a_rules_change_moves_old_runs_to_the_new_bucket(sessions, tmp_path):
    agent_id, run_id, secret = leased_run(sessions)
    artifact_id = upload(sessions, tmp_path, agent_id, run_id, secret, CONTROL_DUMP)
    analyze_artifact(sessions, artifact_id, tmp_path / "scratch")
    # What an older rules version had said of this dump.
    with transaction(sessions) as s:
        row = analyses.for_artifact(s, artifact_id=artifact_id)
        row.rules_version, row.label, row.signature = RULES_VERSION - 1, "other-hang", "old"
        analyses.label_run(s, run_id=run_id, label=None, signature=None)
    with transaction(sessions) as s:
        assert [b.label for b in analyses.buckets(s)] == []  # not hung yet: no bucket
        s.get(Run, run_id).status = "hung"
    with transaction(sessions) as s:
        (old,) = analyses.buckets(s)
        assert old.label == "other-hang"
    assert reanalyze(sessions, tmp_path / "scratch").artifacts == [artifact_id]
    assert reanalyze(sessions, tmp_path / "scratch").artifacts == []  # nothing older any more
    with transaction(sessions) as s:
        (bucket,) = analyses.buckets(s)
        assert (bucket.label, bucket.runs, bucket.example_runs) == ("control-deadlock", 1, [run_id])
        assert analyses.for_artifact(s, artifact_id=artifact_id).rules_version == RULES_VERSION


@pytest.mark.parametrize(
    "source",
    ["written", pytest.param("public", marks=pytest.mark.needs("public-minidumps"))],
)
def test_a_minidump_that_contradicts_the_agents_hardware_record_is_flagged(
    sessions, tmp_path, source
):
    """An x64 dump (written here, or the public fixture of that shape) against an arm64
    agent record (tests.factories)."""
    agent_id, run_id, secret = leased_run(sessions)
    if source == "written":
        dump = tmp_path / "written.dmp"
        dump.write_bytes(known_x64_crash())
    else:
        dump = public_minidumps() / "rust-minidump-invalid-parameter.dmp"
    artifact_id = upload(
        sessions, tmp_path, agent_id, run_id, secret, dump, kind="minidump", name="process-1.dmp"
    )
    analyze_artifact(sessions, artifact_id, tmp_path / "scratch")
    with transaction(sessions) as s:
        report = analyses.for_artifact(s, artifact_id=artifact_id).report
    assert report["kind"] == "minidump"
    assert report["arch"] == "amd64"
    flagged = [p for p in report["problems"] if p.startswith("hardware record disagrees")]
    assert any("architecture" in p for p in flagged), report["problems"]


def test_two_dumps_analysed_at_once_label_their_run_from_both_reports(sessions, tmp_path):
    """Two threads analyse the two dumps of one run. The events below force the
    interleaving that labelled a run from a partial set before the run was locked
    first: both reports flushed, both read (each missing the other's, uncommitted),
    the control deadlock's thread commits, then the other-hang one commits its
    partial verdict. Locked first, the second waits and reads both; the events
    then time out (2 s) instead of forcing anything."""
    agent_id, run_id, secret = leased_run(sessions)
    control = upload(sessions, tmp_path, agent_id, run_id, secret, CONTROL_DUMP)
    other = upload(sessions, tmp_path, agent_id, run_id, secret, OTHER_DUMP)
    engine = sessions.kw["bind"]
    flushed = threading.Barrier(2, timeout=2)
    reported: set[str] = set()
    b_has_read, a_committed = threading.Event(), threading.Event()

    def after_flush(session, _context):
        if any(isinstance(o, ArtifactAnalysis) for o in [*session.new, *session.dirty]):
            reported.add(threading.current_thread().name)
            with contextlib.suppress(threading.BrokenBarrierError):
                flushed.wait()

    def before_lock(_conn, _cursor, statement, _params, _context, _many):
        me = threading.current_thread().name
        if me in reported and "FOR UPDATE" in statement and "FROM runs" in statement:
            if me == "A":
                b_has_read.wait(2)  # B read its reports before A commits
            else:
                b_has_read.set()
                a_committed.wait(2)  # and commits after A

    def after_commit(_session):
        if threading.current_thread().name == "A" and "A" in reported:
            a_committed.set()

    event.listen(sessions, "after_flush", after_flush)
    event.listen(sessions, "after_commit", after_commit)
    event.listen(engine, "before_cursor_execute", before_lock)
    try:
        threads = [
            threading.Thread(
                name=name, target=analyze_artifact, args=(sessions, artifact, tmp_path / name)
            )
            for name, artifact in (("A", control), ("B", other))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        event.remove(sessions, "after_flush", after_flush)
        event.remove(sessions, "after_commit", after_commit)
        event.remove(engine, "before_cursor_execute", before_lock)
    with transaction(sessions) as s:
        labels = sorted(r.label for r in s.scalars(select(ArtifactAnalysis)))
        assert labels == ["control-deadlock", "other-hang"]
        run = s.get(Run, run_id)
        assert run.label == "control-deadlock", f"labelled from a partial set: {run.signature}"


def test_each_kind_of_dump_is_reanalysed_against_its_own_rules_version(sessions, tmp_path):
    """A minidump's report carries the minidump rules' version: compared with the goroutine
    rules' (a higher number), it was redone at every pass, never done."""
    agent_id, run_id, secret = leased_run(sessions)
    artifact_id = upload(sessions, tmp_path, agent_id, run_id, secret, CONTROL_DUMP)
    analyze_artifact(sessions, artifact_id, tmp_path / "scratch")
    with transaction(sessions) as s:
        row = analyses.for_artifact(s, artifact_id=artifact_id)
        row.kind = "minidump"  # as a minidump's report is stored: the minidump rules' version
        row.rules_version = MINIDUMP_RULES_VERSION
    assert MINIDUMP_RULES_VERSION < RULES_VERSION
    assert reanalyze(sessions, tmp_path / "scratch").artifacts == []
    with transaction(sessions) as s:
        analyses.for_artifact(s, artifact_id=artifact_id).rules_version = 0
    assert reanalyze(sessions, tmp_path / "scratch").artifacts == [artifact_id]


def test_kept_triaged_dumps_of_older_rules_are_reanalysed_from_their_bytes(sessions, tmp_path):
    """A dump kept from outside the farm follows a rules change like the farm's own: its
    label, signature, confidence and report are made again from ``text_gz``."""
    with transaction(sessions) as s:
        old, _ = triage.keep(
            s,
            analysis=analyze_path(CONTROL_DUMP),
            data=CONTROL_DUMP.read_bytes(),
            sent_by="qa",
            source=None,
        )
        current, _ = triage.keep(
            s,
            analysis=analyze_path(OTHER_DUMP),
            data=OTHER_DUMP.read_bytes(),
            sent_by="qa",
            source=None,
        )
        # What an older version of the goroutine rules had said of the first.
        old.rules_version, old.label, old.confidence = RULES_VERSION - 1, "other-hang", "weak"
        old.signature, old.signature_key, old.report = "old", "0" * 16, {"kind": "goroutines"}
        old_id, current_id = old.id, current.id
    done = reanalyze(sessions, tmp_path / "scratch")
    assert (done.artifacts, done.triaged) == ([], [old_id]), "only the older one is redone"
    assert reanalyze(sessions, tmp_path / "scratch").triaged == []  # nothing older any more
    with transaction(sessions) as s:
        row = s.get(TriagedDump, old_id)
        assert (row.label, row.confidence, row.rules_version) == (
            "control-deadlock",
            "strong",
            RULES_VERSION,
        )
        assert row.signature.startswith("control-deadlock:sync.(*Mutex).Lock")
        assert row.signature_key == analyses.signature_key(row.signature)
        assert row.report["label"] == "control-deadlock"
        assert s.get(TriagedDump, current_id).label == "other-hang"
    assert reanalyze(sessions, tmp_path / "scratch", everything=True).triaged == [
        old_id,
        current_id,
    ]


def test_a_kept_dump_no_longer_readable_keeps_its_verdict_and_is_not_retried(sessions, tmp_path):
    with transaction(sessions) as s:
        row, _ = triage.keep(
            s,
            analysis=analyze_path(CONTROL_DUMP),
            data=b"Close -> CancelIoEx -> ReadFile never returns\n",  # prose, as rules now say
            sent_by="qa",
            source=None,
        )
        row.rules_version = 0
        row_id = row.id
    assert reanalyze(sessions, tmp_path / "scratch").triaged == [row_id]
    assert reanalyze(sessions, tmp_path / "scratch").triaged == []
    with transaction(sessions) as s:
        row = s.get(TriagedDump, row_id)
        assert (row.label, row.rules_version) == ("control-deadlock", RULES_VERSION)
        assert "not a dump" in row.report["problems"][-1], row.report["problems"]
