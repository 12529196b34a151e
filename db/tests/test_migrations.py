import gzip
import hashlib
import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from reprofarm_db import jobs
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import downgrade, upgrade
from reprofarm_db.models import Base, Run
from reprofarm_protocol.jobs import JobCreate
from sqlalchemy import inspect, select, text

from tests.factories import register_agent

EXPRESSION_INDEXES = {"ix_runs_ready_queue"}
"""Alembic reflects `priority DESC` as the plain column: it cannot compare these
indexes, so they are checked by their definition below instead."""


def _comparable(obj, name, type_, _reflected, _compare_to):
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


def _check(url):
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": _comparable})
        diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        if conn.dialect.name == "postgresql":
            definition = conn.scalar(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_runs_ready_queue'")
            )
            assert "(priority DESC, id) WHERE" in definition
            assert "'ready'" in definition
        assert "runs" in inspect(conn).get_table_names()
    downgrade(url)
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    upgrade(url)
    engine.dispose()


def test_migrations_upgrade_downgrade_and_match_the_models_on_sqlite(tmp_path):
    _check(f"sqlite:///{tmp_path / 'm.sqlite'}")


def test_migrations_upgrade_downgrade_and_match_the_models_on_postgres(postgres_url):
    _check(postgres_url)


def _insert_kept(conn, text_bytes: bytes, sent_by: str) -> None:
    """A kept triaged dump as 0010 stored it (no sha256, kind or rules_version)."""
    conn.execute(
        text(
            "INSERT INTO triaged_dumps (sent_by, sent_at, label, signature, signature_key,"
            " confidence, report, size, text_gz) VALUES (:by, CURRENT_TIMESTAMP, 'other-hang',"
            " 'other-hang:x', '0123456789abcdef', 'weak', :report, :size, :gz)"
        ),
        {
            "by": sent_by,
            "report": json.dumps({"kind": "goroutines"}),
            "size": len(text_bytes),
            "gz": gzip.compress(text_bytes),
        },
    )


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_0013_hashes_kept_dumps_folds_copies_and_marks_finished_runs_strong(request, tmp_path, db):
    url = (
        f"sqlite:///{tmp_path / 'm.sqlite'}"
        if db == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    with transaction(sessions) as s:
        register_agent(s, "lab", pools=["p"])
        spec = JobCreate(scenario="control-deadlock", pools=["p"], duration_s=5, repeats=3)
        jobs.create(s, spec=spec, idempotency_key=None, max_runs=10)
        passed, failed, hung = sorted(r.id for r in s.scalars(select(Run)))
    downgrade(url, "0012")
    engine = make_engine(url)
    with engine.begin() as conn:
        # As 0010 left them: finished before it, no confidence.
        conn.execute(
            text(
                "UPDATE runs SET status = CASE id WHEN :p THEN 'passed' WHEN :f THEN 'failed'"
                " ELSE 'hung' END, label = CASE id WHEN :h THEN NULL ELSE 'no-hang' END,"
                " label_confidence = NULL"
            ),
            {"p": passed, "f": failed, "h": hung},
        )
        _insert_kept(conn, b"dump one", "first")
        _insert_kept(conn, b"dump two", "second")
        _insert_kept(conn, b"dump one", "again")
    upgrade(url)
    with engine.connect() as conn:
        kept = conn.execute(
            text("SELECT sent_by, sha256, kind, rules_version FROM triaged_dumps ORDER BY id")
        ).all()
        confidence = dict(conn.execute(text("SELECT id, label_confidence FROM runs")).all())
    engine.dispose()
    assert [tuple(k) for k in kept] == [
        ("first", hashlib.sha256(b"dump one").hexdigest(), "goroutines", 0),
        ("second", hashlib.sha256(b"dump two").hexdigest(), "goroutines", 0),
    ], "the later copy of 'dump one' is folded into the first"
    assert confidence == {passed: "strong", failed: "strong", hung: None}
