"""Engines and sessions, built from a URL by factories (never at import time)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker

IDLE_PING_S = 5.0
"""How long the api lets a pooled connection sit idle before it pings it (``make_engine``)."""


def make_engine(url: str, *, ping_after_idle_s: float | None = None, **kwargs: Any) -> Engine:
    """SQLite gets WAL and a busy timeout: the api, the worker and beat write
    to one file from several processes, one writer at a time. Postgres connections are
    pinged before each use, or with ``ping_after_idle_s`` only after sitting idle that
    long (the api's hot path: ``_ping_when_idle``)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let BEGIN below control transactions
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock at BEGIN: two lease requests can
            # then never read the same ready run and both claim it.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if ping_after_idle_s is None:
        return create_engine(url, pool_pre_ping=True, **kwargs)
    engine = create_engine(url, **kwargs)
    _ping_when_idle(engine, ping_after_idle_s)
    return engine


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Ping a pooled connection before use only when it sat idle ``idle_s``.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: a round trip per
    transaction, a sixth of a heartbeat's cost under load (docs/operations.md). A
    connection in steady use needs no ping: were the server restarted under it, its
    next statement fails as a disconnect, which invalidates the whole pool, and that
    request answers 503 (agents resend). An idle one, the usual victim of a restart,
    is still pinged; a failed ping empties the pool (the others were connected to the
    same server) and the request gets a new connection. The worker and the CLI keep
    the ping at every use: a task that failed on a restart would not be retried."""
    pool = engine.pool

    @event.listens_for(pool, "connect")
    def _fresh(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkin")
    def _idle(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):
                raise InvalidatePoolError(str(exc)) from exc  # the pool connects anew
            raise


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep the statistics rollups exact at every flush, and whose runs and
    jobs change status only by the steps the state machine allows (states.py)."""
    import reprofarm_db.states  # noqa: F401 - registers the state machine's checks
    from reprofarm_db.rollups import track  # rollups needs the models, engine does not

    factory = sessionmaker(engine, expire_on_commit=False)
    track(factory)
    return factory


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits at the end of the block, or rolls back."""
    with factory() as session, session.begin():
        yield session


def forget_cached(session: Session, model: type[Any], key: int) -> None:
    """A statement changed this row: a copy the session's identity map holds (a caller
    that loaded it as an object) would otherwise still read as before."""
    cached = session.identity_map.get(model.__mapper__.identity_key_from_primary_key((key,)))
    if cached is not None:
        session.expire(cached)


@contextmanager
def single_statement(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for work that writes in one statement (a heartbeat's conditional
    ``UPDATE ... RETURNING``): on Postgres each statement commits alone, which saves
    the ``BEGIN`` and ``COMMIT`` round trips; the statement is atomic by itself, and
    nothing is answered before it committed. SQLite keeps a transaction (its
    ``BEGIN IMMEDIATE`` is how its writers take turns)."""
    with factory() as session:
        if session.get_bind().dialect.name != "postgresql":
            with session.begin():
                yield session
                _refuse_orm_changes(session)
            return
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session
        _refuse_orm_changes(session)


def _refuse_orm_changes(session: Session) -> None:
    """On Postgres they would never be written: a bug, refused alike on both databases."""
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("single_statement: ORM changes would be dropped; use transaction")
