"""The calls api tests make as an agent or QA would, through the real app."""

from __future__ import annotations

from typing import Any

from reprofarm_db import builds
from reprofarm_db.engine import transaction
from reprofarm_db.models import Job, Run
from sqlalchemy import func, select

from tests.factories import FAKE_SOURCE, fake_build, hardware, machine_secret


def register(api, name="arm-1", pools=("windows-arm64",), cpus=4):
    enroll = api.token("agent")
    r = api.client.post(
        "/api/v1/agents/register",
        headers=api.headers(enroll),
        json={
            "name": name,
            "pools": list(pools),
            "hardware": hardware(cpus=cpus).model_dump(mode="json"),
            "machine_secret": machine_secret(name),
        },
    )
    assert r.status_code == 200, r.text
    return r.json()["token"]


def make_build(api, path, target="windows/arm64"):
    path.write_bytes(b"binary")
    with transaction(api.client.app.state.sessions) as s:
        fake_build(s, path=path, target=target)
        for job in s.scalars(select(Job)):
            builds.mark_ready(s, job=job, source_sha256=FAKE_SOURCE)


def submit(api, **spec):
    body = {"scenario": "control-deadlock", "duration_s": 5, **spec}
    return api.client.post("/api/v1/jobs", headers=api.headers(api.admin), json=body)


def run_count(api):
    with transaction(api.client.app.state.sessions) as s:
        return s.scalar(select(func.count()).select_from(Run))


def lease(api: Any, agent_token: str) -> dict[str, Any]:
    """Lease one run; returns the reply with ``headers`` for calls about it."""
    h = api.headers(agent_token)
    r = api.client.post("/api/v1/agents/me/lease", headers=h, json={"wait_s": 1})
    assert r.status_code == 200, r.text
    run = r.json()
    run["headers"] = {**h, "X-Lease-Token": run["lease_token"]}
    return run
