"""GET /agents/page: agents by name, a page at a time, filtered by pool, online,
health and name prefix, with the total that matches; GET /agents keeps its shape."""

from datetime import timedelta

from reprofarm_db.engine import transaction
from reprofarm_db.models import Agent, utcnow
from sqlalchemy import select

from tests.api_calls import register


def _page(api, **params):
    r = api.client.get("/api/v1/agents/page", headers=api.headers(api.admin), params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    return body["total"], [a["name"] for a in body["agents"]]


def test_agents_are_paged_by_name_and_filtered_with_their_total(api):
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
