"""The hot path's statements and the ORM callers beside them: an object loaded before a
statement changed its row reads the new row, a heartbeat's autocommit is durable on both
databases, and the pools a registration reads come in the order the canary choice needs."""

from __future__ import annotations

import pytest
from reprofarm_db import artifacts, leases, pools
from reprofarm_db.engine import single_statement, transaction
from reprofarm_db.errors import NotFound
from reprofarm_db.models import Agent, Run
from reprofarm_protocol.controls import PoolControls
from reprofarm_protocol.jobs import Heartbeat

from db.tests.test_leases import LEASE_TOKENS, T0, claim, make_ready_job, result
from tests.factories import register_agent


def _leased(sessions):
    with transaction(sessions) as s:
        agent, _ = register_agent(s, "a")
        make_ready_job(s)
    with transaction(sessions) as s:
        run, _ = claim(s, agent.id)
    return agent.id, run.id


def test_a_run_loaded_before_its_result_reads_as_ended_after_it(sessions):
    agent_id, run_id = _leased(sessions)
    with transaction(sessions) as s:
        loaded = s.get(Run, run_id)
        assert loaded.status == "leased"
        leases.record_result(
            s,
            agent=s.get(Agent, agent_id),
            run_id=run_id,
            lease_token=LEASE_TOKENS[run_id],
            report=result(),
            now=T0,
        )
        assert (loaded.status, loaded.iterations) == ("hung", 10)


def test_a_heartbeat_in_its_own_statement_is_durable(sessions):
    agent_id, run_id = _leased(sessions)
    with transaction(sessions) as s:
        before = s.get(Run, run_id).lease_expires_at
    with single_statement(sessions) as s:
        reply = leases.heartbeat(
            s,
            agent_id=agent_id,
            run_id=run_id,
            lease_token=LEASE_TOKENS[run_id],
            beat=Heartbeat(iterations=7),
            now=T0.replace(minute=30),
            lease_s=60,
        )
    assert reply.lease_valid
    with transaction(sessions) as s:
        run = s.get(Run, run_id)
        assert run.iterations == 7
        assert run.lease_expires_at > before


def test_orm_changes_in_a_single_statement_session_are_refused_not_dropped(sessions):
    with transaction(sessions) as s:
        agent, _ = register_agent(s, "a")
    with pytest.raises(RuntimeError, match="would be dropped"), single_statement(sessions) as s:
        s.get(Agent, agent.id).needs_reboot = True
    with transaction(sessions) as s:
        assert not s.get(Agent, agent.id).needs_reboot  # refused on SQLite too, not committed


@pytest.mark.parametrize("blob", [None, "/blobs/x"])
def test_progress_or_completion_of_no_artifact_is_not_found(sessions, blob):
    with pytest.raises(NotFound), transaction(sessions) as s:
        artifacts.record_progress(s, artifact_id=999, received=1, blob=blob)


def test_a_registration_reads_its_pools_by_name(sessions):
    """``for_agent`` takes the first canary: the same one whatever the rows' order."""
    with transaction(sessions) as s:
        for name, go in (("zeta", "1.27"), ("alpha", "1.21")):
            pools.set_(
                s, name=name, controls=PoolControls(canary_at_start=True, go_version=go), by="t"
            )
    with transaction(sessions) as s:
        read = pools.of_names(s, names=["zeta", "alpha", "none"])
        assert [p.name for p in read] == ["alpha", "zeta"]
        agent = Agent(name="x", pools=["zeta", "alpha"])
        assert pools.for_agent(agent, read).canary.go_version == "1.21"
