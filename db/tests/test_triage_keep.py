"""Keeping triaged dumps: the same bytes are stored once, also when two senders race
(the unique sha256 decides, and the loser gets the winner's row)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from reprofarm_analyzer.analysis import analyze_path
from reprofarm_db import triage
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.models import TriagedDump
from sqlalchemy import func, select, text

CONTROL = (
    Path(__file__).resolve().parents[2]
    / "analyzer/tests/corpus/goroutines/hangtest-control-deadlock-stall-go1.27-linux.txt"
)


def _keep(session, sent_by: str) -> tuple[TriagedDump, bool]:
    return triage.keep(
        session,
        analysis=analyze_path(CONTROL),
        data=CONTROL.read_bytes(),
        sent_by=sent_by,
        source=None,
    )


def test_the_same_bytes_are_kept_once(sessions) -> None:
    with transaction(sessions) as s:
        first, new = _keep(s, "qa")
        assert new
        first_id = first.id
    with transaction(sessions) as s:
        again, new = _keep(s, "someone else")
        assert (again.id, again.sent_by, new) == (first_id, "qa", False)
        assert s.scalar(select(func.count()).select_from(TriagedDump)) == 1


@pytest.fixture
def pg_sessions(postgres_url):
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_two_senders_racing_store_one_copy_and_both_get_its_id(pg_sessions) -> None:
    """A keeps and has not committed; B's insert waits on the unique index; A commits,
    B's insert fails in its savepoint and B answers with A's row, its transaction intact."""
    answers: dict[str, tuple[int, bool]] = {}
    with transaction(pg_sessions) as a:
        row, new = _keep(a, "a")
        answers["a"] = (row.id, new)

        def b() -> None:
            with transaction(pg_sessions) as s:
                found, created = _keep(s, "b")
                answers["b"] = (found.id, created)
                s.execute(text("SELECT 1"))  # the transaction still works

        racer = threading.Thread(target=b)
        racer.start()
        assert _waits_on_a_lock(pg_sessions), "B never waited on A's row"
    racer.join(30)
    assert answers["a"][1] is True
    assert answers["b"] == (answers["a"][0], False)
    with transaction(pg_sessions) as s:
        assert s.scalar(select(func.count()).select_from(TriagedDump)) == 1


def _waits_on_a_lock(sessions, tries: int = 600) -> bool:
    """Whether another backend of this database waits on a lock, asked afresh each time
    (a transaction sees one snapshot of pg_stat_activity) for up to 30 s."""
    for _ in range(tries):
        with transaction(sessions) as watcher:
            waiting = watcher.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                )
            )
            if waiting:
                return True
            watcher.execute(text("SELECT pg_sleep(0.05)"))
    return False
