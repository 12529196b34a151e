"""Studies on a real farm (api, worker, beat on Postgres and Redis, a real agent running
the control scenario): `reprofarm verify` and `reprofarm search` through the CLI, and a
study that outlives a restart of its api and its worker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.farm import Farm, wait_for

BIN = Path(sys.executable).parent
LAB = "studies"
QUICK = ["--duration", "1s", "--stall-timeout", "0.5s", "--process-dumps", "0", "--pool", LAB]


def _cli(farm: Farm, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(BIN / "reprofarm"), *args, "--api", farm.url, "--token", farm.admin, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def _agent(farm: Farm) -> None:
    farm.start_agent("solo", [LAB])
    wait_for("the agent", lambda: len(farm.call("GET", "/api/v1/agents")) == 1, timeout=60)


def test_verify_tells_a_fix_from_no_fix_on_real_runs(farm: Farm) -> None:
    _agent(farm)
    fixed = _cli(
        farm,
        "verify",
        "--scenario",
        "control-deadlock",
        "--baseline",
        "control_chance=1e-3",
        "--candidate",
        "control_chance=0",
        "--margin",
        "1",
        "--budget",
        "80",
        "--wait",
        *QUICK,
    )
    assert fixed["verdict"] == "fixed", fixed["reason"]
    assert fixed["baseline"]["hangs"] == fixed["baseline"]["runs"] >= 5
    assert fixed["candidate"]["hangs"] == 0
    assert fixed["candidate"]["runs"] >= 5
    assert fixed["label"] == "control-deadlock"
    assert fixed["status"] == "done"
    not_fixed = _cli(
        farm,
        "verify",
        "--scenario",
        "control-deadlock",
        "--baseline",
        "control_chance=1e-3",
        "--candidate",
        "control_chance=1e-3",
        "--budget",
        "80",
        "--wait",
        *QUICK,
    )
    assert not_fixed["verdict"] == "not-fixed", not_fixed["reason"]
    assert not_fixed["candidate"]["hangs"] >= 1
    # The runs are the evidence: every one is the job's, with its arm's fields.
    runs = farm.runs(not_fixed["job_id"])
    assert {r["status"] for r in runs} <= {"hung", "cancelled", "passed"}


def test_search_decides_each_chance_with_fewer_runs_than_uniform(farm: Farm) -> None:
    """The issue's contract command as it is (default lo 0.005, hi 0.05; process dumps
    on), pointed at this farm's pool."""
    _agent(farm)
    study = _cli(
        farm,
        "search",
        "--scenario",
        "control-deadlock",
        "--control-chance",
        "0,1e-3",
        "--duration",
        "1s",
        "--stall-timeout",
        "0.5s",
        "--budget",
        "200",
        "--wait",
        "--pool",
        LAB,
    )
    decisions = {c["control_chance"]: c for c in study["cells"]}
    assert decisions[1e-3]["decision"] == "reproduces"
    assert decisions[0]["decision"] == "does-not"
    assert decisions[1e-3]["hangs"] >= 2
    assert decisions[0]["hangs"] == 0
    assert study["runs_used"] <= 200
    assert study["runs_used"] < study["runs_uniform"]


def test_a_study_outlives_a_restart_of_its_api_and_worker(farm: Farm) -> None:
    _agent(farm)
    study = farm.call(
        "POST",
        "/api/v1/studies",
        json={
            "kind": "verify",
            "scenario": "control-deadlock",
            "pools": [LAB],
            "duration_s": 1,
            "stall_timeout_s": 0.5,
            "process_dumps": 0,
            "baseline": {"control_chance": 1e-3},
            "candidate": {"control_chance": 0},
            "margin": 2,
            "budget": {"runs": 120},
        },
    )
    job_id = study["job_id"]
    path = f"/api/v1/studies/{job_id}"
    wait_for("a few runs", lambda: farm.call("GET", path)["runs_counted"] >= 4, timeout=120)
    farm.kill("api")
    farm.kill("worker")
    time.sleep(3)  # the agent's calls fail meanwhile; it retries
    farm.start_api()
    farm.start("worker", ["worker", "--concurrency", "2"])

    def decided() -> dict[str, Any] | None:
        now: dict[str, Any] = farm.call("GET", path)
        return now if now["decided"] else None

    final = wait_for("the study to decide", decided, timeout=300, every=1)
    assert final["verdict"] == "fixed", final["reason"]
    assert final["status"] == "done"
    # Everything it decided is recomputed from its runs: its hangs are runs that hung by
    # the decision. A run still out then may hang after it (stored, never counted), and one
    # that ended before a run made earlier is held back: those hangs are not in its counts.
    runs = farm.runs(job_id)
    decided_at = datetime.fromisoformat(farm.call("GET", f"/api/v1/jobs/{job_id}")["finished_at"])
    hung = [r for r in runs if r["status"] == "hung"]
    by_decision = [r for r in hung if datetime.fromisoformat(r["finished_at"]) <= decided_at]
    counted = final["baseline"]["hangs"] + final["candidate"]["hangs"]
    assert counted <= len(by_decision) <= len(hung)
    assert counted >= 1
