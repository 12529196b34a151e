"""An agent killed mid-run, then started again on the same work folder, with the
real app and real hangtest processes: the restarted agent reports the run as an
``error`` result with the evidence its folder holds, through the spool, before
it leases anything, and the controller ends the run consistently whether its
lease was still held (counted as error) or already lost (kept, not counted)."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from reprofarm_agent.client import ApiClient
from reprofarm_agent.platform import current_platform
from reprofarm_agent.service import AgentService
from reprofarm_agent.settings import AgentSettings
from reprofarm_db import builds, leases
from reprofarm_db.engine import transaction
from reprofarm_db.models import Job
from reprofarm_protocol.jobs import LeasedRun
from reprofarm_protocol.runs import RunResult, RunStatus
from sqlalchemy import select

from tests.api_calls import submit
from tests.factories import FAKE_SOURCE, fake_build

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="stops the agent with SIGSTOP")

# The agent process that gets killed: the steps work_once takes after its lease
# (remember the lease, prepare, run with heartbeats), from the lease the test took
# for it. Its api is out of reach (heartbeats fail and are logged); it only runs.
_DOOMED_AGENT = """
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
from reprofarm_agent.client import ApiClient
from reprofarm_agent.platform import current_platform
from reprofarm_agent.service import AgentService
from reprofarm_agent.settings import AgentSettings
from reprofarm_protocol.jobs import LeasedRun

leased = LeasedRun.model_validate_json(Path(sys.argv[1]).read_text())
settings = AgentSettings(work_dir=Path(sys.argv[2]), cache_dir=Path(sys.argv[3]))
agent = AgentService(
    client=ApiClient(httpx.Client(base_url="http://127.0.0.1:9")),
    platform=current_platform(settings),
    settings=settings,
    name="doomed",
    pools=["lab"],
)
agent.markers.begin(leased, now=datetime.now(UTC))
spec = agent.prepare(leased)
with agent.keep_lease(leased) as keeper:
    agent.run(leased, spec, keeper)
raise SystemExit("the run ended before the test killed this agent")
"""


def service(api, tmp_path, enrollment) -> AgentService:
    settings = AgentSettings(work_dir=tmp_path / "agent", cache_dir=tmp_path / "cache")
    return AgentService(
        client=ApiClient(api.client, enrollment),
        platform=current_platform(settings),
        settings=settings,
        name="lab-1",
        pools=["lab"],
        lease_wait_s=0,
        sleep=lambda _s: None,
    )


def lease_a_run(api, agent: AgentService, binary: Path, **spec) -> LeasedRun:
    """Register, submit one run, record the real hangtest as its build, lease it."""
    agent.register()
    assert submit(api, pools=["lab"], **spec).status_code == 201
    (row,) = api.client.get("/api/v1/agents", headers=api.headers(api.admin)).json()
    with transaction(api.client.app.state.sessions) as s:
        fake_build(s, path=binary, target=row["target"])
        for job in s.scalars(select(Job)):
            builds.mark_ready(s, job=job, source_sha256=FAKE_SOURCE)
    leased = agent.lease()
    assert leased is not None
    return leased


def wait_for(what: str, check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def kill_agent_mid_hang(agent: AgentService, leased: LeasedRun, tmp_path: Path) -> int:
    """Run the lease in a real agent process and SIGKILL it while hangtest hangs:
    the agent is stopped first so that it sees nothing of the hang (as an agent
    killed by surprise), and killed once hangtest wrote its goroutine dump.
    Returns hangtest's pid."""
    agent.prepare(leased)  # the build into the shared cache: the doomed agent needs no api
    lease_file = tmp_path / "lease.json"
    lease_file.write_text(leased.model_dump_json())
    work, cache = str(agent.settings.work_dir), str(agent.settings.cache_dir)
    doomed = subprocess.Popen([sys.executable, "-c", _DOOMED_AGENT, str(lease_file), work, cache])
    run_dir = agent.run_dir(leased.run_id)
    try:
        wait_for("hangtest's progress", lambda: b'"progress"' in _read(run_dir / "stdout.jsonl"))
        os.kill(doomed.pid, signal.SIGSTOP)
        wait_for("hangtest's goroutine dump", lambda: list(run_dir.glob("goroutines-*.txt")))
    finally:
        doomed.kill()
        doomed.wait()
    for line in _read(run_dir / "stdout.jsonl").splitlines():
        event = json.loads(line)
        if event["event"] == "start":
            return int(event["pid"])
    raise AssertionError("no start event in stdout.jsonl")


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def run_row(api, run_id: int) -> dict:
    return api.client.get(f"/api/v1/runs/{run_id}", headers=api.headers(api.admin)).json()


def test_a_restarted_agent_reports_the_run_it_was_killed_in_as_error_with_its_evidence(
    api, tmp_path, hangtest_binary
):
    enrollment = api.token("agent")
    first = service(api, tmp_path, enrollment)
    leased = lease_a_run(
        api,
        first,
        hangtest_binary,
        scenario="control-deadlock",
        control_chance=0.01,
        duration_s=60,
        stall_timeout_s=1,
        workers=2,
        process_dumps=0,
    )
    hangtest_pid = kill_agent_mid_hang(first, leased, tmp_path)
    run_dir = first.run_dir(leased.run_id)
    marker = first.markers.get(leased.run_id)
    assert marker is not None, "the killed agent left no record of its run"
    assert (marker.attempt, marker.pid) == (leased.attempt, hangtest_pid)

    back = service(api, tmp_path, enrollment)  # the agent, started again
    assert back.report_interrupted_runs() == [leased.run_id]
    assert current_platform(back.settings).process_identity(hangtest_pid) is None, (
        "hangtest of the interrupted run is still running"
    )
    assert run_dir.is_dir(), "the run's folder went before its result was delivered"
    assert back.markers.pending() == []
    (spooled,) = back.spool.pending()
    assert spooled.report.result.status is RunStatus.ERROR

    back.register()
    assert back.work_once() is False  # delivers first; the queue is empty then
    run = run_row(api, leased.run_id)
    assert run["status"] == "error", run
    assert "killed or restarted mid-run" in run["reason"], run["reason"]
    assert run["iterations"] > 0
    assert run["result"]["iterations"] == run["iterations"]
    assert run["result"]["duration_s"] > 0
    kinds = {a["kind"] for a in run["artifacts"]}
    assert {"goroutines", "stdout"} <= kinds, kinds
    assert all(a["complete"] for a in run["artifacts"]), run["artifacts"]
    assert not run_dir.exists(), "a delivered run's folder stays on the agent's disk"
    assert back.spool.pending() == []
    job = api.client.get(f"/api/v1/jobs/{run['job_id']}", headers=api.headers(api.admin)).json()
    assert job["status"] == "done", job


def test_the_late_report_of_a_run_whose_lease_was_lost_is_kept_and_not_counted(api, tmp_path):
    enrollment = api.token("agent")
    first = service(api, tmp_path, enrollment)
    binary = tmp_path / "hangtest"
    binary.write_bytes(b"never run")
    leased = lease_a_run(api, first, binary)
    first.markers.begin(leased, now=datetime.now(UTC))  # killed before hangtest started
    with transaction(api.client.app.state.sessions) as s:
        assert leases.sweep(s, now=datetime.now(UTC) + timedelta(hours=1), max_attempts=3)

    back = service(api, tmp_path, enrollment)
    assert back.report_interrupted_runs() == [leased.run_id]
    back.register()
    back.deliver()
    run = run_row(api, leased.run_id)
    assert run["status"] == "lost", run
    assert run["late_result"]["status"] == "error"
    assert "before hangtest started" in run["late_result"]["reason"]
    job_runs = api.client.get(
        f"/api/v1/jobs/{run['job_id']}/runs", headers=api.headers(api.admin)
    ).json()["runs"]
    assert [r["status"] for r in job_runs] == ["lost", "ready"], "the retry must still run"


def test_a_run_spooled_just_before_the_agent_died_is_not_reported_again(api, tmp_path):
    enrollment = api.token("agent")
    first = service(api, tmp_path, enrollment)
    binary = tmp_path / "hangtest"
    binary.write_bytes(b"never run")
    leased = lease_a_run(api, first, binary)
    first.markers.begin(leased, now=datetime.now(UTC))
    passed = RunResult(
        status=RunStatus.PASSED,
        reason="completed: 10 iterations",
        iterations=10,
        duration_s=1.0,
        cpu_set=[0],
        requested_cpu_set=[0],
        gomaxprocs=1,
        exit_code=0,
    )
    first._spool(leased.run_id, leased.lease_token, passed)
    # killed here: the result is spooled, its marker not yet deleted

    back = service(api, tmp_path, enrollment)
    assert back.report_interrupted_runs() == []
    assert back.markers.pending() == []
    (spooled,) = back.spool.pending()
    assert spooled.report.result == passed
    back.register()
    back.deliver()
    back.spool.save(spooled)  # and once more, as after a crash before the spool forgot it
    assert back.deliver() == 1  # the api takes the repeat as a no-op
    assert run_row(api, leased.run_id)["status"] == "passed"
