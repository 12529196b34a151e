"""A small farm on the real app, for the fuzz and role-matrix tests: agents A and
B registered over HTTP (each bound to its machine secret), a job of ready runs
with a build, one run leased to A (with its lease token) and a finished
artifact that A uploaded to that run. Built with the calls of tests/api_calls.py,
as an agent and QA make them."""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprofarm_api.install import service
from reprofarm_api.install.wheels import ReleaseUnavailableError
from reprofarm_db.settings import ControllerSettings

from tests.api_calls import lease, make_build, register, submit
from tests.factories import hardware, machine_secret

if TYPE_CHECKING:
    from api.tests.conftest import Api

POOL = "windows-arm64"


@dataclass
class Agent:
    name: str
    machine_secret: str
    token: str


@dataclass
class Farm:
    api: Api  # the app behind Starlette's TestClient, and an admin token
    enrollment: str
    a: Agent
    b: Agent
    job_id: int
    build_id: int
    run_id: int
    lease_token: str
    artifact_id: int
    artifact_name: str

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def registration(name: str) -> dict[str, Any]:
    """The body tests/api_calls.register sends for ``name`` (same machine secret)."""
    return {
        "name": name,
        "pools": [POOL],
        "hardware": hardware(cpus=4).model_dump(mode="json"),
        "machine_secret": machine_secret(name),
    }


def artifact_upload(content: bytes) -> dict[str, str]:
    """The headers of a PUT that uploads all of ``content`` as one artifact."""
    return {
        "X-Artifact-Kind": "goroutines",
        "X-Artifact-Sha256": hashlib.sha256(content).hexdigest(),
        "X-Artifact-Size": str(len(content)),
    }


@functools.cache
def prebuilt_agent_release() -> Path | None:
    """The agent release (its wheels), built once per test process: each farm
    serves it as an operator's folder instead of building it again in its own
    data dir (seconds each). None when it cannot be built here (no uv): the
    farms then answer what the api answers without it."""
    folder = Path(tempfile.mkdtemp(prefix="reprofarm-agent-release-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    try:
        return service.release_folder(ControllerSettings(data_dir=folder))
    except ReleaseUnavailableError:
        return None


def _agent(api: Api, name: str) -> Agent:
    return Agent(name, machine_secret(name), register(api, name, pools=(POOL,)))


def seed_farm(api: Api, tmp_path: Path, *, repeats: int = 3, prefix: str = "seed") -> Farm:
    api.settings.agent_wheels_dir = prebuilt_agent_release()
    a, b = _agent(api, f"{prefix}-agent-a"), _agent(api, f"{prefix}-agent-b")
    job = submit(api, repeats=repeats)
    assert job.status_code == 201, job.text
    make_build(api, tmp_path / "hangtest.exe")
    leased = lease(api, a.token)
    build_id = int(leased["build"]["url"].split("/")[-2])  # /api/v1/builds/{id}/binary

    name, content = "goroutines.txt", b"goroutine 1 [semacquire]:\n" * 100
    upload = api.client.put(
        f"/api/v1/runs/{leased['run_id']}/artifacts/{name}",
        headers={**leased["headers"], **artifact_upload(content)},
        content=content,
    )
    assert upload.status_code == 200, upload.text
    assert upload.json()["complete"], upload.text
    run = api.client.get(f"/api/v1/runs/{leased['run_id']}", headers=api.headers(api.admin))
    (artifact,) = run.json()["artifacts"]

    return Farm(
        api=api,
        enrollment=api.token("agent"),
        a=a,
        b=b,
        job_id=job.json()["id"],
        build_id=build_id,
        run_id=leased["run_id"],
        lease_token=leased["lease_token"],
        artifact_id=artifact["id"],
        artifact_name=name,
    )
