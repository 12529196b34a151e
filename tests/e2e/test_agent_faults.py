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
def test_a_killed_agent_leaves_no_hangtest_running_and_no_run_folder_once_restarted(
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
    farm.kill("crashy")
    # hangtest runs in a process group of its own; with its reader gone, its
    # next event (at most a progress interval away) ends it with SIGPIPE.
    wait_for("hangtest to end with its agent", lambda: not _running(pid), timeout=15)
    farm.start_agent("crashy", ["lab"])  # same name, same work folder
    done = farm.wait_job_done(job["id"])
    runs = farm.runs(job["id"])
    assert [r["status"] for r in runs] == ["lost", "passed"], runs
    assert done["runs"]["passed"] == 1
    retry_dir = run_dir.with_name(f"run-{runs[1]['id']}")
    assert not retry_dir.exists(), "a delivered run's folder stays on the agent's disk"
    # The run it was killed in has no result to deliver: the restarted agent
    # forgets its folder (AgentService.forget_interrupted_runs).
    assert not run_dir.exists(), f"{run_dir} of the interrupted run stays on the agent's disk"
