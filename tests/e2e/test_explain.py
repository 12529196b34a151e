"""`reprofarm explain` on a real farm (api, worker, beat on Postgres and Redis, a real
agent running the control scenario): the issue's contract. A job of the control with
control_chance 0 (never hangs) and 1e-3 (always hangs within a second) and cpus 1 and 2:
explain for that job finds the chance and not the CPU count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.farm import Farm, wait_for

BIN = Path(sys.executable).parent
LAB = "explain"


def _cli(farm: Farm, *args: str) -> Any:
    done = subprocess.run(
        [str(BIN / "reprofarm"), *args, "--api", farm.url, "--token", farm.admin, "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_explain_finds_the_control_chance_and_not_the_cpu_count(farm: Farm) -> None:
    farm.start_agent("solo", [LAB])
    wait_for("the agent", lambda: len(farm.call("GET", "/api/v1/agents")) == 1, timeout=60)
    job = _cli(
        farm,
        "submit",
        "--scenario",
        "control-deadlock",
        "--control-chance",
        "0,1e-3",
        "--cpus",
        "1,2",
        "--repeats",
        "4",
        "--duration",
        "1s",
        "--stall-timeout",
        "0.5s",
        "--process-dumps",
        "0",
        "--pool",
        LAB,
        "--wait",
    )
    assert job["status"] == "done", job
    assert job["runs"]["hung"] == 8, job
    report = _cli(farm, "explain", "--job", str(job["job_id"]))
    by = {f["factor"]: f for f in report["factors"]}
    assert by["control_chance"]["q"] < 0.05, report
    assert by["cpus"]["q"] >= 0.05, report
    levels = {lv["level"]: lv for lv in by["control_chance"]["levels"]}
    assert levels["0.001"]["hangs"] == levels["0.001"]["runs"] == 8, levels
    assert levels["0"]["hangs"] == 0
    reference = [lv for lv in by["cpus"]["levels"] if lv.get("reference")]
    assert len(reference) == 1
    assert reference[0]["odds_ratio"] == 1.0
    assert report["aliased"] == []
    table = subprocess.run(
        [
            str(BIN / "reprofarm"),
            "explain",
            "--job",
            str(job["job_id"]),
            "--api",
            farm.url,
            "--token",
            farm.admin,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert table.returncode == 0, table.stderr[-3000:]
    assert "8 hangs in 16 counted runs" in table.stdout, table.stdout
    assert "1 (reference)" in table.stdout, table.stdout
    assert table.stdout.index("control_chance") < table.stdout.index("cpus "), table.stdout
