"""A health check's verdict from its real dumps, read by the worker's analysis on Postgres:
the control's goroutine dump and a process dump that parse make the agent healthy; a
process dump that does not parse (a broken capture) makes it unhealthy, and says why."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from reprofarm_db import builds, claims, health, jobs, leases
from reprofarm_db.engine import transaction
from reprofarm_db.models import Agent, HealthCheck
from reprofarm_protocol.controls import AgentHealth, CheckKind, CheckTrigger, PoolControls
from reprofarm_protocol.runs import RunStatus
from reprofarm_worker.analysis import analyze_artifact

from db.tests.test_leases import result
from tests.factories import fake_build, register_agent
from tests.minidump_writer import known_x64_crash
from worker.tests.test_analysis import CONTROL_DUMP, sessions, upload

__all__ = ["sessions"]  # the fixture, shared with the analysis tests


def _leased_check(sessions):
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        agent, _ = register_agent(s, "lab", pools=["p"])
        fake_build(s, target=agent.target)
        check = health.start(
            s,
            agent=agent,
            kind=CheckKind.CANARY,
            trigger=CheckTrigger.START,
            controls=PoolControls(),
            now=now,
            max_runs=10,
        )
        builds.mark_ready_if_built(s, job=jobs.get_or_raise(s, job_id=check.job_id))
    with transaction(sessions) as s:
        run, _build, secret = claims.claim_objects(
            s, agent=s.get(Agent, agent.id), now=now, lease_s=60, avoid_grace_s=0
        )
        return agent.id, check.id, run.id, secret


def _hung(sessions, agent_id, run_id, secret):
    with transaction(sessions) as s:
        leases.record_result(
            s,
            agent=s.get(Agent, agent_id),
            run_id=run_id,
            lease_token=secret,
            report=result(RunStatus.HUNG),
            now=datetime.now(UTC),
        )


PROCESS_DUMPS = {
    "reads": known_x64_crash(),
    "empty": b"MDMP" + b"\0" * 40,  # a minidump's magic and nothing behind it
    "garbage": b"not a dump at all\n" * 8,
}


@pytest.mark.parametrize("process_dump", sorted(PROCESS_DUMPS))
def test_a_hung_check_is_judged_by_whether_its_dumps_parse(
    sessions, tmp_path: Path, process_dump: str
) -> None:
    agent_id, check_id, run_id, secret = _leased_check(sessions)
    goroutines = upload(sessions, tmp_path, agent_id, run_id, secret, CONTROL_DUMP)
    minidump = tmp_path / "hangtest.dmp"
    minidump.write_bytes(PROCESS_DUMPS[process_dump])
    process = upload(sessions, tmp_path, agent_id, run_id, secret, minidump, kind="minidump")
    _hung(sessions, agent_id, run_id, secret)
    with transaction(sessions) as s:
        assert s.get(HealthCheck, check_id).outcome is None  # the dumps decide, once read
    analyze_artifact(sessions, goroutines, tmp_path / "scratch")
    with transaction(sessions) as s:
        assert s.get(HealthCheck, check_id).outcome is None  # one of two read
    analyze_artifact(sessions, process, tmp_path / "scratch")
    with transaction(sessions) as s:
        check = s.get(HealthCheck, check_id)
        agent = s.get(Agent, agent_id)
        if process_dump == "reads":
            assert check.outcome == "passed", check.detail
            assert agent.health == AgentHealth.HEALTHY
        else:
            assert check.outcome == "failed"
            assert "process dump hangtest.dmp did not parse" in check.detail
            assert agent.health == AgentHealth.UNHEALTHY
            assert "capture failed" in agent.health_detail
