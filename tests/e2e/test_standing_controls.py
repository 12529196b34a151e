"""Standing controls on a real farm (api, worker, beat on Postgres and Redis) with a real
agent running hangtest and taking real dumps (gcore):

- a pool asking for the capture canary: the agent's start queues a stuck child, whose
  goroutine dump and core are uploaded, analysed, and make the agent healthy;
- a scheduled positive control that cannot hang (chance 1e-9 for one second): the agent
  is unhealthy, and a job's run waits instead of being leased to it;
- ``reprofarm agents check`` with a chance that hangs: healthy again, the job runs, and
  its run counts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.farm import Farm, wait_for

BIN = Path(sys.executable).parent
LAB = "checked"


def _agent(farm: Farm) -> dict[str, Any]:
    (agent,) = farm.call("GET", "/api/v1/agents")
    return agent


def _health_is(farm: Farm, health: str) -> dict[str, Any] | None:
    agents = farm.call("GET", "/api/v1/agents")
    return agents[0] if agents and agents[0]["health"] == health else None


@pytest.mark.needs("gcore")  # the canary's process dump is a core on Linux
def test_checks_make_a_real_agent_unhealthy_and_healthy_again(farm: Farm) -> None:
    farm.call("PUT", f"/api/v1/pools/{LAB}", json={"canary_at_start": True})
    farm.start_agent("solo", [LAB])
    healthy = wait_for("the canary to pass", lambda: _health_is(farm, "healthy"), timeout=240)
    (canary,) = farm.call("GET", f"/api/v1/agents/{healthy['id']}/health-checks")
    assert (canary["kind"], canary["trigger"], canary["outcome"]) == ("canary", "start", "passed")
    assert "1 goroutine dump and 1 process dump read" in canary["detail"]

    farm.call(
        "PUT",
        f"/api/v1/pools/{LAB}",
        json={
            "positive_control_every_s": 86400,
            "positive_control_chance": 1e-9,
            "positive_control_duration_s": 1,
        },
    )
    sick = wait_for("the control to fail", lambda: _health_is(farm, "unhealthy"), timeout=120)
    assert "did not hang" in sick["health_detail"]

    job = farm.call(
        "POST",
        "/api/v1/jobs",
        json={
            "scenario": "control-deadlock",
            "control_chance": [1e-3],
            "duration_s": 1,
            "stall_timeout_s": 1,
            "process_dumps": 0,
            "pools": [LAB],
        },
    )
    time.sleep(8)  # several long-poll wake-ups of the agent: none leases the run
    assert [r["status"] for r in farm.runs(job["id"])] == ["ready"]

    farm.call(
        "PUT",
        f"/api/v1/pools/{LAB}",
        json={"positive_control_every_s": 86400, "positive_control_chance": 1e-3},
    )
    done = subprocess.run(
        [
            str(BIN / "reprofarm"),
            "agents",
            "check",
            "solo",
            "--api",
            farm.url,
            "--token",
            farm.admin,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["outcome"] == "passed"
    assert _agent(farm)["health"] == "healthy"
    finished = farm.wait_job_done(job["id"])
    assert finished["status"] == "done"
    stats = farm.call("GET", f"/api/v1/stats?group_by=scenario&job_id={job['id']}")
    assert [(r["runs"], r["hangs"]) for r in stats["rows"]] == [(1, 1)]
    assert stats["harness_problems"]["discounted_runs"] == 0
