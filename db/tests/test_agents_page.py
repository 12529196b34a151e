"""agents.page filters in SQL on both databases (pools are a JSON list)."""

from datetime import UTC, datetime, timedelta

from reprofarm_db import agents
from reprofarm_db.engine import transaction

from tests.factories import register_agent


def test_a_page_of_agents_filters_by_pool_online_health_and_prefix(sessions):
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        register_agent(s, "lab-1", pools=["arm"])
        two, _ = register_agent(s, "lab-2", pools=["arm", "x64"])
        three, _ = register_agent(s, "lab-3", pools=["x64"])
        register_agent(s, "lab_4", pools=["armv8"])
        three.last_seen = now - timedelta(hours=1)
        two.health = "unhealthy"

    def names(**where):
        with transaction(sessions) as s:
            rows, total = agents.page(
                s, where=agents.AgentFilter(**where), now=now, lease_s=60, limit=2, offset=0
            )
            return total, [a.name for a in rows]

    assert names() == (4, ["lab-1", "lab-2"])
    assert names(pool="arm") == (2, ["lab-1", "lab-2"])
    assert names(pool="x64", online=True) == (1, ["lab-2"])
    assert names(online=False) == (1, ["lab-3"])
    assert names(health="unhealthy") == (1, ["lab-2"])
    assert names(name_prefix="lab-") == (3, ["lab-1", "lab-2"])  # "_" is no wildcard
    assert names(name_prefix="lab_") == (1, ["lab_4"])
