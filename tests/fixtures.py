"""Real services for tests: a fresh Postgres database and a Redis key space
per test session, created here and dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_ADMIN = os.environ.get("REPROFARM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = os.environ.get("REPROFARM_TEST_REDIS", "redis://127.0.0.1:6379")


def _pg_url(name: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}"


@contextmanager
def scratch_database(prefix: str = "reprofarm_test") -> Iterator[str]:
    """A new, empty Postgres database, dropped on exit (tests and benchmarks)."""
    import psycopg  # imported here: agent-only installs (Windows runners) lack it

    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with scratch_database() as url:
        yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database index of its own (1-15), flushed before and after."""
    import redis

    index = 1 + secrets.randbelow(15)
    url = f"{REDIS_HOST}/{index}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()
