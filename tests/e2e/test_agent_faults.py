"""An agent killed in the middle of a run, then started again on the same work
folder (a crash, an operator's kill, a reboot, a self-update)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.farm import wait_for


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan may wait for a reaper that never comes)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return "zombie" not in line
    except OSError:
        return False
    return False


def _hangtest_pid(events: Path) -> int | None:
    if not events.exists():
        return None
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "start":
            return int(event["pid"])
    return None


# hangtest_build: the session's build, which the farm's worker then finds instead
# of compiling it for half a minute.
def test_a_killed_agent_reports_its_interrupted_run_with_its_evidence_once_restarted(
    hangtest_build, farm
):
    farm.start_agent("crashy", ["lab"])
    wait_for("the agent", lambda: len(farm.call("GET", "/api/v1/agents")) == 1, timeout=60)
    job = farm.call(
        "POST",
        "/api/v1/jobs",
        json={"scenario": "pipe-close-race", "pools": ["lab"], "duration_s": 8, "workers": 2},
    )
    run_dir = wait_for(
        "the run to start",
        lambda: next(iter((farm.root / "crashy" / "runs").glob("run-*")), None),
        timeout=120,
        every=0.2,
    )
    pid = wait_for("hangtest's start event", lambda: _hangtest_pid(run_dir / "stdout.jsonl"))
    wait_for("hangtest's progress", lambda: '"progress"' in (run_dir / "stdout.jsonl").read_text())
    farm.kill("crashy")
    (interrupted,) = farm.runs(job["id"])
    # Restarted once the sweep has given the run up (lease 6 s), so the report
    # takes the late path: kept, not counted, while the retry runs.
    wait_for(
        "the lease to be lost",
        lambda: farm.call("GET", f"/api/v1/runs/{interrupted['id']}")["status"] == "lost",
        timeout=60,
    )
    assert run_dir.is_dir(), "the interrupted run's folder went before it was reported"
    farm.start_agent("crashy", ["lab"])  # same name, same work folder
    done = farm.wait_job_done(job["id"])
    runs = farm.runs(job["id"])
    assert [r["status"] for r in runs] == ["lost", "passed"], runs
    assert done["runs"]["passed"] == 1
    assert not _running(pid), f"hangtest {pid} of the interrupted run is still running"
    late = runs[0]["late_result"]
    assert late is not None, "the restarted agent did not report the run it was killed in"
    assert late["status"] == "error"
    assert "killed or restarted mid-run" in late["reason"], late["reason"]
    assert late["iterations"] > 0, late
    assert "stdout" in {a["kind"] for a in runs[0]["artifacts"]}, runs[0]["artifacts"]
    # Both folders go once the api has their results (the spool deletes them).
    retry_dir = run_dir.with_name(f"run-{runs[1]['id']}")
    wait_for("the delivered folders to go", lambda: not run_dir.exists() and not retry_dir.exists())
    assert not list((farm.root / "crashy" / "inflight").glob("run-*.json"))
