"""An agent's long-polls, heartbeats and results keep it online without a row write each: the
api notes who spoke and writes their last_seen about once a second, in one statement
(reprofarm_api.agents.liveness)."""

import time
from datetime import timedelta

import pytest
from reprofarm_db.engine import transaction
from reprofarm_db.models import Agent, utcnow
from sqlalchemy import select

from api.tests.test_role_matrix import HUNG
from tests.api_calls import register


def _last_seen(api, name):
    with transaction(api.client.app.state.sessions) as s:
        return s.scalar(select(Agent.last_seen).where(Agent.name == name))


def test_an_idle_agents_long_poll_brings_it_back_online_within_a_flush(api):
    token = register(api, name="lab-1")
    an_hour_ago = utcnow() - timedelta(hours=1)
    with transaction(api.client.app.state.sessions) as s:
        s.scalar(select(Agent).where(Agent.name == "lab-1")).last_seen = an_hour_ago
    online = api.client.get(
        "/api/v1/agents/page", headers=api.headers(api.admin), params={"online": "true"}
    )
    assert online.json()["total"] == 0
    asked = utcnow()
    r = api.client.post("/api/v1/agents/me/lease", headers=api.headers(token), json={"wait_s": 0})
    assert r.status_code == 204
    deadline = time.monotonic() + 5
    while _last_seen(api, "lab-1") == an_hour_ago and time.monotonic() < deadline:
        time.sleep(0.1)
    seen = _last_seen(api, "lab-1")
    assert seen >= asked, f"last_seen stayed {seen} after the long-poll"
    online = api.client.get(
        "/api/v1/agents/page", headers=api.headers(api.admin), params={"online": "true"}
    )
    assert online.json()["total"] == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/runs/999/result", {"result": HUNG}),
        (
            "/api/v1/agents/me/results",
            {"results": [{"run_id": 999, "lease_token": "x", "result": HUNG}]},
        ),
    ],
)
def test_a_result_is_a_sign_of_life_too(api, path, body):
    """A result no longer writes the agent's row: the api notes it like a heartbeat."""
    token = register(api, name="lab-2")
    an_hour_ago = utcnow() - timedelta(hours=1)
    with transaction(api.client.app.state.sessions) as s:
        s.scalar(select(Agent).where(Agent.name == "lab-2")).last_seen = an_hour_ago
    asked = utcnow()
    r = api.client.post(path, headers=api.headers(token), json=body)
    assert r.status_code in (200, 404), r.text  # the run does not exist: the agent spoke
    deadline = time.monotonic() + 5
    while _last_seen(api, "lab-2") == an_hour_ago and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _last_seen(api, "lab-2") >= asked
