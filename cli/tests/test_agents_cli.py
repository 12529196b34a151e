"""`reprofarm agents list` and `agents check NAME` read `GET /agents/page`, through the
installed command against a real api process (uvicorn on a scratch Postgres): every page,
one page (--limit, --offset), a filter, and the exact name a check starts on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from reprofarm_cli.controls import agents_matching
from reprofarm_cli.local_instance import Instance
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction

from tests.e2e.farm import Farm, RedisServer
from tests.factories import register_agent

NAMES = ["lab-1", "lab-10", "lab-2", "lab_1", "other"]  # by name, as the api orders them


@dataclass
class Served:
    farm: Farm
    ids: dict[str, int]


@pytest.fixture
def served(tmp_path, postgres_url) -> Iterator[Served]:
    """The api alone, as `reprofarm api` serves it, with five agents (offline soon: the
    farm's lease is 6 s); lab-2 waits for a reboot."""
    redis = RedisServer(tmp_path)
    redis.start()
    farm = Farm(root=tmp_path, database_url=postgres_url, redis=redis)
    farm.prepare()
    engine = make_engine(postgres_url)
    with transaction(make_sessionmaker(engine)) as s:
        made = {name: register_agent(s, name, pools=["lab"])[0] for name in NAMES}
        made["lab-2"].needs_reboot = True
        s.flush()
        ids = {name: a.id for name, a in made.items()}
    engine.dispose()
    farm.start_api()
    yield Served(farm, ids)
    farm.stop_all()
    redis.stop()


def reprofarm(farm: Farm, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "reprofarm"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "REPROFARM_API": farm.url, "REPROFARM_TOKEN": farm.admin},
    )


def _names(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, done.stderr
    return [a["name"] for a in json.loads(done.stdout)]


def test_agents_list_shows_every_agent_or_one_page(served):
    farm = served.farm
    assert _names(reprofarm(farm, "agents", "list", "--json")) == NAMES
    assert _names(reprofarm(farm, "agents", "list", "--json", "--limit", "2")) == NAMES[:2]
    window = reprofarm(farm, "agents", "list", "--json", "--limit", "2", "--offset", "2")
    assert _names(window) == ["lab-2", "lab_1"]
    rebooting = reprofarm(farm, "agents", "list", "--json", "--state", "needs-reboot")
    assert _names(rebooting) == ["lab-2"]
    assert _names(reprofarm(farm, "agents", "list", "--json", "--search", "LAB_")) == ["lab_1"]
    text = reprofarm(farm, "agents", "list", "--limit", "2")
    assert text.returncode == 0, text.stderr
    assert "agents 1-2 of 5" in text.stderr
    bad = reprofarm(farm, "agents", "list", "--state", "asleep")
    assert bad.returncode == 2
    assert "asleep" in bad.stderr


def test_every_page_is_read_when_there_are_more_agents_than_a_page(served):
    instance = Instance(url=served.farm.url, token=served.farm.admin)
    for size in (1, 2, 5):  # 5: the last page is full, and no empty page is asked for
        found, total = agents_matching(instance, {}, limit=None, offset=0, page_size=size)
        assert ([a["name"] for a in found], total) == (NAMES, 5), size
    found, total = agents_matching(instance, {}, limit=None, offset=3, page_size=1)
    assert ([a["name"] for a in found], total) == (NAMES[3:], 5)


def test_agents_check_starts_a_check_on_the_agent_of_that_exact_name(served):
    farm = served.farm
    done = reprofarm(farm, "agents", "check", "lab-1", "--no-wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["agent_id"] == served.ids["lab-1"]
    missing = reprofarm(farm, "agents", "check", "lab", "--no-wait")
    assert missing.returncode == 2
    assert "no agent is named 'lab'" in missing.stderr
