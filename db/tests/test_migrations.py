from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from reprofarm_db.engine import make_engine
from reprofarm_db.migrate import downgrade, upgrade
from reprofarm_db.models import Base
from sqlalchemy import inspect, text

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
