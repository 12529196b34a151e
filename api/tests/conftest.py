from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from reprofarm_api.app import create_app
from reprofarm_db import tokens
from reprofarm_db.engine import transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.settings import ControllerSettings


@dataclass
class Api:
    client: TestClient
    settings: ControllerSettings
    admin: str

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def token(self, role: str) -> str:
        with transaction(self.client.app.state.sessions) as s:
            return tokens.create(s, name=role, role=role)


@pytest.fixture
def api(request, postgres_url, tmp_path) -> Iterator[Api]:
    """The real app on a scratch Postgres; parametrize indirectly with a dict of
    ControllerSettings fields to change."""
    upgrade(postgres_url)
    fields = {
        "data_dir": tmp_path,
        "database_url": postgres_url,
        "max_runs_per_job": 50,
        "max_artifact_bytes": 1 << 20,
        **getattr(request, "param", {}),
    }
    settings = ControllerSettings(**fields)
    app = create_app(settings, relay=False)
    with TestClient(app) as client:
        with transaction(app.state.sessions) as s:
            admin = tokens.create(s, name="admin", role="admin")
        yield Api(client, settings, admin)
