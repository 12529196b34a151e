"""agents.page filters and counts in SQL on both databases (pools are a JSON list, the
state a CASE over needs_reboot, last_seen and current_run_id)."""

from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest
from reprofarm_db import agents
from reprofarm_db.engine import transaction
from reprofarm_protocol.jobs import AgentState

from tests.factories import register_agent

NOW = datetime.now(UTC)


@pytest.fixture
def farm(sessions):
    """lab-1 idle and healthy; lab-2 busy and unhealthy; lab-3 offline though it holds a
    run (amd64); lab_4 needs a reboot and is offline too. Returns their ids by name."""
    with transaction(sessions) as s:
        one, _ = register_agent(s, "lab-1", pools=["arm"])
        two, _ = register_agent(s, "lab-2", pools=["arm", "x64"])
        three, _ = register_agent(s, "lab-3", pools=["x64"], arch="amd64")
        four, _ = register_agent(s, "lab_4", pools=["armv8"])
        for a in (one, two, three, four):
            a.last_seen = NOW - timedelta(seconds=10)
        one.health = "healthy"
        two.health = "unhealthy"
        two.current_run_id = 7
        three.last_seen = NOW - timedelta(hours=1)
        three.current_run_id = 9
        four.last_seen = NOW - timedelta(hours=1)
        four.needs_reboot = True
        s.flush()
        return {a.name: a.id for a in (one, two, three, four)}


def _page(sessions, limit=2, **where):
    with transaction(sessions) as s:
        found = agents.page(
            s, where=agents.AgentFilter(**where), now=NOW, lease_s=60, limit=limit, offset=0
        )
        return found.total, [a.name for a, _ in found.agents]


def test_a_page_of_agents_filters_by_pool_online_health_and_prefix(sessions, farm):
    assert _page(sessions) == (4, ["lab-1", "lab-2"])
    assert _page(sessions, pool="arm") == (2, ["lab-1", "lab-2"])
    assert _page(sessions, pool="x64", online=True) == (1, ["lab-2"])
    assert _page(sessions, online=False) == (2, ["lab-3", "lab_4"])
    assert _page(sessions, health="unhealthy") == (1, ["lab-2"])
    assert _page(sessions, name_prefix="lab-") == (3, ["lab-1", "lab-2"])  # "_" is no wildcard
    assert _page(sessions, name_prefix="lab_") == (1, ["lab_4"])


def test_each_agent_has_one_state_the_first_that_applies(sessions, farm):
    assert _page(sessions, state=AgentState.IDLE) == (1, ["lab-1"])
    assert _page(sessions, state=AgentState.BUSY) == (1, ["lab-2"])
    assert _page(sessions, state=AgentState.OFFLINE) == (1, ["lab-3"])  # its run: not busy
    assert _page(sessions, state=AgentState.NEEDS_REBOOT) == (1, ["lab_4"])  # not offline
    with transaction(sessions) as s:
        rows = agents.list_with_state(s, where=agents.AgentFilter(), now=NOW, lease_s=60)
        states = {a.name: state for a, state in rows}
    assert states == {
        "lab-1": AgentState.IDLE,
        "lab-2": AgentState.BUSY,
        "lab-3": AgentState.OFFLINE,
        "lab_4": AgentState.NEEDS_REBOOT,
    }


def test_an_agent_is_found_by_its_exact_name_or_its_id(sessions, farm):
    assert _page(sessions, name="lab-2") == (1, ["lab-2"])
    assert _page(sessions, name="lab") == (0, [])
    assert _page(sessions, name="LAB-2") == (0, [])
    assert _page(sessions, agent_id=farm["lab_4"]) == (1, ["lab_4"])
    assert _page(sessions, agent_id=farm["lab_4"], name="lab-1") == (0, [])


def test_search_matches_name_target_and_cpu_model_in_any_case_and_a_whole_pool(sessions, farm):
    assert _page(sessions, limit=10, search="LAB") == (4, ["lab-1", "lab-2", "lab-3", "lab_4"])
    assert _page(sessions, search="lab_") == (1, ["lab_4"])  # "_" is no wildcard
    assert _page(sessions, search="%") == (0, [])
    assert _page(sessions, search="AMD64") == (1, ["lab-3"])  # its target, windows/amd64
    assert _page(sessions, search="Cpu Of Lab-2") == (1, ["lab-2"])  # its CPU model
    assert _page(sessions, search="armv8") == (1, ["lab_4"])  # its pool, named whole
    assert _page(sessions, search="x6") == (0, [])  # part of a pool's name: no
    assert _page(sessions, search="arm", state=AgentState.BUSY) == (1, ["lab-2"])


def test_the_counts_cover_every_agent_whatever_the_filter(sessions, farm):
    every = {
        "agents": 4,
        "online": 2,
        "busy": 1,
        "idle": 1,
        "offline": 1,
        "needs_reboot": 1,
        "healthy": 1,
        "unhealthy": 1,
        "unknown": 2,
    }
    for where in ({}, {"name": "lab-1"}, {"state": AgentState.OFFLINE, "pool": "nowhere"}):
        with transaction(sessions) as s:
            found = agents.page(
                s, where=agents.AgentFilter(**where), now=NOW, lease_s=60, limit=1, offset=0
            )
        assert asdict(found.counts) == every, where


def test_agents_are_counted_per_pool_in_sql(sessions, farm):
    with transaction(sessions) as s:
        counted = agents.count_in_pools(s, pools=["arm", "x64", "armv8", "ar", "none"])
        assert agents.count_in_pools(s, pools=[]) == {}
    assert counted == {"arm": 2, "x64": 2, "armv8": 1}
