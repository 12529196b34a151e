"""The pool pings a connection only after it sat idle: a restart of the server is
survived unseen by an idle connection, and costs one failed statement to a busy one."""

from __future__ import annotations

import time

import psycopg
import pytest
from reprofarm_db.engine import make_engine
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests.fixtures import PG_ADMIN


def _terminate(pid: int) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _backend(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_an_idle_connection_killed_under_the_pool_is_replaced_before_use(postgres_url):
    engine = make_engine(postgres_url, ping_after_idle_s=0.2, pool_size=1, max_overflow=0)
    try:
        first = _backend(engine)
        _terminate(first)
        time.sleep(0.3)  # idle past the threshold: the next checkout pings
        second = _backend(engine)
        assert second != first
    finally:
        engine.dispose()


def test_a_busy_connection_is_not_pinged_and_one_statement_pays_for_a_restart(postgres_url):
    engine = make_engine(postgres_url, ping_after_idle_s=60.0, pool_size=1, max_overflow=0)
    try:
        first = _backend(engine)
        _terminate(first)
        with pytest.raises(OperationalError) as failed:
            _backend(engine)  # no ping: the statement meets the dead connection
        assert failed.value.connection_invalidated
        assert _backend(engine) != first  # the pool was invalidated: a new connection
    finally:
        engine.dispose()


def test_a_failed_ping_empties_the_pool(postgres_url):
    """The other pooled connections went with the same server: one used just now is not
    pinged, yet it is not handed out dead either."""
    engine = make_engine(postgres_url, ping_after_idle_s=0.2, pool_size=2, max_overflow=0)
    try:
        idle, recent = engine.connect(), engine.connect()
        pids = [_pid(c) for c in (idle, recent)]
        idle.close()  # back in the pool first: it is checked out first, and pinged
        time.sleep(0.3)
        recent.close()  # back just now: not pinged
        for pid in pids:
            _terminate(pid)
        with engine.connect() as first, engine.connect() as second:
            assert {_pid(first), _pid(second)}.isdisjoint(pids)
    finally:
        engine.dispose()


def _pid(conn) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_without_an_idle_threshold_every_use_is_pinged(postgres_url):
    """The worker's and the CLI's engines: a task is not retried, so none meets a dead
    connection."""
    engine = make_engine(postgres_url, pool_size=1, max_overflow=0)
    try:
        first = _backend(engine)
        _terminate(first)
        assert _backend(engine) != first
    finally:
        engine.dispose()
