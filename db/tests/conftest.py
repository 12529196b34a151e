from collections.abc import Iterator

import pytest
from reprofarm_db.engine import make_engine, make_sessionmaker
from reprofarm_db.migrate import upgrade
from sqlalchemy.orm import Session, sessionmaker


@pytest.fixture(params=["sqlite", "postgres"])
def sessions(request, tmp_path) -> Iterator[sessionmaker[Session]]:
    """A migrated database of each kind."""
    url = (
        f"sqlite:///{tmp_path / 'db.sqlite'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()
