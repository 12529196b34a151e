"""Jobs for machines that are away: accepted with --wait-for-agents while no agent
of the pool exists, run when its first agent comes, expired when none does."""

import json
import subprocess
import sys

from tests.e2e.farm import wait_for


def submit(farm, *args):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "reprofarm_cli",
            "submit",
            "--api",
            farm.url,
            "--token",
            farm.admin,
            "--json",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,  # beat and the worker may be starved on a busy machine
        check=False,
    )


def test_a_job_waits_for_a_pools_first_agent_and_completes(farm):
    refused = submit(farm, "--scenario", "control-deadlock", "--pool", "late")
    assert refused.returncode != 0
    assert "no online agent matches" in refused.stderr
    done = submit(
        farm,
        "--scenario",
        "control-deadlock",
        "--pool",
        "late",
        "--wait-for-agents",
        "10m",
        "--duration",
        "10s",
        "--stall-timeout",
        "2s",
        "--workers",
        "2",
    )
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["job_id"]
    assert farm.call("GET", f"/api/v1/jobs/{job_id}")["total_runs"] == 1
    farm.start_agent("late-1", ["late"])  # the pool's first agent, after the job
    finished = farm.wait_job_done(job_id, timeout=240)
    assert finished["status"] == "done"
    assert finished["runs"]["hung"] == 1


def test_a_job_whose_agents_never_come_expires_with_a_reason_per_cell(farm):
    done = submit(
        farm,
        "--scenario",
        "pipe-close-race",
        "--pool",
        "away-a",
        "--pool",
        "away-b",
        "--wait-for-agents",
        "3s",
        "--duration",
        "5s",
    )
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["job_id"]
    expired = wait_for(
        "the job to expire",
        lambda: (j := farm.call("GET", f"/api/v1/jobs/{job_id}"))["status"] == "expired" and j,
        timeout=180,  # beat and the worker may be starved on a busy machine
    )
    assert expired["runs"]["expired"] == 2
    reasons = sorted(r["reason"] for r in farm.runs(job_id))
    assert "pool away-a" in reasons[0]
    assert "pool away-b" in reasons[1]
