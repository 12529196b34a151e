"""GET /agents/page: agents by name, a page at a time, filtered by pool, online, state,
health, name (prefix or exact), id and a search, with the total that matches and the
counts over every agent; GET /agents keeps its shape; GET /pools counts each pool's agents.
The filters' SQL on both databases is db/tests/test_agents_page.py's."""

from datetime import timedelta

import pytest
from reprofarm_db.engine import transaction
from reprofarm_db.models import Agent, utcnow
from sqlalchemy import select

from tests.api_calls import register


def _get(api, **params):
    r = api.client.get("/api/v1/agents/page", headers=api.headers(api.admin), params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _page(api, **params):
    body = _get(api, **params)
    return body["total"], [a["name"] for a in body["agents"]]


@pytest.fixture
def lab(api):
    """lab-1 idle; lab-2 busy and unhealthy (arm and x64); lab-3 offline; lab_4 needs a
    reboot; other in no pool. Returns the agents' ids by name."""
    for name, pools in [
        ("lab-1", ["arm"]),
        ("lab-2", ["arm", "x64"]),
        ("lab-3", ["x64"]),
        ("lab_4", ["arm"]),
        ("other", []),
    ]:
        register(api, name, pools=pools)
    with transaction(api.client.app.state.sessions) as s:
        agents = {a.name: a for a in s.scalars(select(Agent))}
        agents["lab-3"].last_seen = utcnow() - timedelta(hours=1)  # offline
        agents["lab-2"].health = "unhealthy"
        agents["lab-2"].current_run_id = 12
        agents["lab_4"].needs_reboot = True
        return {name: a.id for name, a in agents.items()}


def test_agents_are_paged_by_name_and_filtered_with_their_total(api, lab):
    assert _page(api) == (5, ["lab-1", "lab-2", "lab-3", "lab_4", "other"])
    assert _page(api, limit=2, offset=1) == (5, ["lab-2", "lab-3"])
    assert _page(api, pool="arm") == (3, ["lab-1", "lab-2", "lab_4"])
    assert _page(api, pool="ar") == (0, [])  # a pool is matched whole
    assert _page(api, online="false") == (1, ["lab-3"])
    assert _page(api, online="true", pool="x64") == (1, ["lab-2"])
    assert _page(api, health="unhealthy") == (1, ["lab-2"])
    assert _page(api, name_prefix="lab-") == (3, ["lab-1", "lab-2", "lab-3"])  # "_" is no wildcard
    assert _page(api, name_prefix="lab_") == (1, ["lab_4"])
    listed = api.client.get("/api/v1/agents", headers=api.headers(api.admin)).json()
    assert [a["name"] for a in listed] == ["lab-1", "lab-2", "lab-3", "lab_4", "other"]


def test_each_agent_says_its_state_and_the_page_filters_by_it(api, lab):
    assert _page(api, state="busy") == (1, ["lab-2"])
    assert _page(api, state="idle") == (2, ["lab-1", "other"])
    assert _page(api, state="offline") == (1, ["lab-3"])
    assert _page(api, state="needs-reboot") == (1, ["lab_4"])
    states = {a["name"]: a["state"] for a in _get(api)["agents"]}
    assert states == {
        "lab-1": "idle",
        "lab-2": "busy",
        "lab-3": "offline",
        "lab_4": "needs-reboot",
        "other": "idle",
    }
    listed = api.client.get("/api/v1/agents", headers=api.headers(api.admin)).json()
    assert {a["name"]: a["state"] for a in listed} == states


def test_an_agent_is_found_by_its_exact_name_or_its_id(api, lab):
    assert _page(api, name="lab-2") == (1, ["lab-2"])
    assert _page(api, name="lab") == (0, [])
    (agent,) = _get(api, id=lab["lab_4"])["agents"]
    assert (agent["id"], agent["name"]) == (lab["lab_4"], "lab_4")


def test_search_matches_a_name_in_any_case_or_a_whole_pool(api, lab):
    assert _page(api, search="LAB-") == (3, ["lab-1", "lab-2", "lab-3"])
    assert _page(api, search="x64") == (2, ["lab-2", "lab-3"])
    assert _page(api, search="x6") == (0, [])


def test_the_counts_cover_every_agent_whatever_the_filters(api, lab):
    every = {
        "agents": 5,
        "online": 4,
        "busy": 1,
        "idle": 2,
        "offline": 1,
        "needs_reboot": 1,
        "healthy": 0,
        "unhealthy": 1,
        "unknown": 4,
    }
    assert _get(api)["counts"] == every
    filtered = _get(api, state="busy", limit=1)
    assert (filtered["total"], filtered["counts"]) == (1, every)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("state", "asleep"),
        ("health", "fine"),
        ("online", "maybe"),
        ("limit", "0"),
        ("limit", "1001"),
        ("offset", "-1"),
        ("id", "0"),
        ("id", str(2**31)),
        ("name", "n" * 101),
        ("search", "s" * 101),
        ("pool", "p" * 101),
    ],
)
def test_a_bad_query_is_422_naming_its_field(api, param, value):
    r = api.client.get("/api/v1/agents/page", headers=api.headers(api.admin), params={param: value})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"] == param, r.text


def test_pools_count_their_agents(api, lab):
    """GET /pools (read with the agents page) counts each pool's agents in SQL."""
    for pool, agents in (("arm", 3), ("gpu", 0)):
        r = api.client.put(
            f"/api/v1/pools/{pool}", headers=api.headers(api.admin), json={"canary_at_start": True}
        )
        assert r.status_code == 200, r.text
        assert r.json()["agents"] == agents, pool
    listed = api.client.get("/api/v1/pools", headers=api.headers(api.admin)).json()
    assert {p["name"]: p["agents"] for p in listed} == {"arm": 3, "gpu": 0}
