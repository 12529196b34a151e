from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from reprofarm_db.engine import make_engine
from reprofarm_db.migrate import downgrade, upgrade
from reprofarm_db.models import Base
from sqlalchemy import inspect


def _check(url):
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
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
