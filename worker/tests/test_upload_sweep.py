"""The beat sweep of abandoned uploads, on the real Postgres: an upload that
announced 8 GiB and sent one byte is removed (row and file) once it is older
than REPROFARM_ABANDONED_UPLOAD_S and idle as long; a fresh one, a finished
one, and one a request is writing now, stay."""

import os
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from reprofarm_api.app import create_app
from reprofarm_db import tokens
from reprofarm_db.engine import transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.models import Artifact
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.queues import TASK_SWEEP_UPLOADS
from reprofarm_worker.app import create_celery
from reprofarm_worker.tasks import sweep_uploads
from sqlalchemy import select

from tests.api_calls import lease, make_build, register, submit

EIGHT_GIB = 8 << 30
SHA = "ab" * 32


class _Api:
    def __init__(self, client: TestClient, settings: ControllerSettings, admin: str) -> None:
        self.client, self.settings, self.admin = client, settings, admin

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def token(self, role: str) -> str:
        with transaction(self.client.app.state.sessions) as s:
            return tokens.create(s, name=role, role=role)


@pytest.fixture
def api(postgres_url, tmp_path):
    upgrade(postgres_url)
    settings = ControllerSettings(
        data_dir=tmp_path, database_url=postgres_url, abandoned_upload_s=3600
    )
    app = create_app(settings, relay=False)
    with TestClient(app) as client:
        with transaction(app.state.sessions) as s:
            admin = tokens.create(s, name="admin", role="admin")
        yield _Api(client, settings, admin)


def _announce(api, run, name: str, size: int, data: bytes):
    return api.client.put(
        f"/api/v1/runs/{run['run_id']}/artifacts/{name}",
        headers={
            **run["headers"],
            "X-Artifact-Kind": "core",
            "X-Artifact-Sha256": SHA,
            "X-Artifact-Size": str(size),
            "Content-Range": f"bytes 0-{len(data) - 1}/{size}",
        },
        content=data,
    )


def _rows(api) -> dict[str, int]:
    with transaction(api.client.app.state.sessions) as s:
        return {a.name: a.received for a in s.scalars(select(Artifact))}


def test_an_abandoned_upload_is_removed_with_its_file_after_the_stated_time(api, tmp_path):
    agent = register(api)
    submit(api, repeats=1)
    make_build(api, tmp_path / "hangtest.exe")
    run = lease(api, agent)
    assert _announce(api, run, "core.gz", EIGHT_GIB, b"x").status_code == 200
    assert _announce(api, run, "busy.gz", EIGHT_GIB, b"y").status_code == 200
    partial = api.settings.artifact_dir / "partial"
    abandoned, busy = partial / f"{run['run_id']}-core.gz", partial / f"{run['run_id']}-busy.gz"
    assert abandoned.stat().st_size == 1
    sessions = api.client.app.state.sessions

    assert sweep_uploads(sessions, api.settings) == [], "an hour has not passed"
    assert set(_rows(api)) == {"core.gz", "busy.gz"}

    later = datetime.now(UTC) + timedelta(seconds=3601)
    old = (later - timedelta(seconds=3700)).timestamp()
    os.utime(abandoned, (old, old))
    os.utime(busy, (old, old))
    with api.client.app.state.artifacts.upload_lock(busy):  # a request writing it now
        removed = sweep_uploads(sessions, api.settings, now=later)
    assert removed == [str(abandoned)]
    assert not abandoned.exists()
    assert _rows(api) == {"busy.gz": 1}
    assert sweep_uploads(sessions, api.settings, now=later) == [str(busy)]
    assert _rows(api) == {}
    assert sweep_uploads(sessions, api.settings, now=later) == [], "safe to run twice"


def test_a_lock_file_left_by_an_api_that_died_mid_upload_does_not_keep_it(api, tmp_path):
    agent = register(api)
    submit(api, repeats=1)
    make_build(api, tmp_path / "hangtest.exe")
    run = lease(api, agent)
    assert _announce(api, run, "core.gz", EIGHT_GIB, b"x").status_code == 200
    partial = api.settings.artifact_dir / "partial" / f"{run['run_id']}-core.gz"
    partial.with_name(partial.name + ".lock").touch()  # its holder was killed: no lock held
    later = datetime.now(UTC) + timedelta(seconds=3601)
    old = (later - timedelta(seconds=3700)).timestamp()
    os.utime(partial, (old, old))
    assert sweep_uploads(api.client.app.state.sessions, api.settings, now=later) == [str(partial)]
    assert _rows(api) == {}


def test_a_partial_file_written_recently_is_not_abandoned(api, tmp_path):
    agent = register(api)
    submit(api, repeats=1)
    make_build(api, tmp_path / "hangtest.exe")
    run = lease(api, agent)
    assert _announce(api, run, "core.gz", EIGHT_GIB, b"x").status_code == 200
    later = datetime.now(UTC) + timedelta(seconds=3601)  # announced over an hour before
    written = (later - timedelta(seconds=60)).timestamp()  # its last byte a minute before
    partial = api.settings.artifact_dir / "partial" / f"{run['run_id']}-core.gz"
    os.utime(partial, (written, written))
    assert sweep_uploads(api.client.app.state.sessions, api.settings, now=later) == []
    assert _rows(api) == {"core.gz": 1}


def test_beat_runs_the_upload_sweep(tmp_path):
    settings = ControllerSettings(data_dir=tmp_path, abandoned_upload_s=3600)
    schedule = create_celery(settings).conf.beat_schedule
    (entry,) = [e for e in schedule.values() if e["task"] == TASK_SWEEP_UPLOADS]
    assert entry["schedule"] <= 900
