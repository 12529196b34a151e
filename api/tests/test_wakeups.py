"""Idle agents' long-polls are woken when runs become ready, not by polling the
database: with the safety re-check pushed far out, a waiting agent still gets a run
submitted after it started waiting, long before its wait would end."""

import threading
import time

import pytest

from tests.api_calls import make_build, register, submit


@pytest.mark.parametrize("api", [{"work_recheck_s": 120.0}], indirect=True)
def test_a_submit_wakes_a_waiting_agent_at_once(api, tmp_path):
    agent = register(api)
    make_build(api, tmp_path / "hangtest.exe")  # builds exist: the submit makes runs ready
    got = {}

    def long_poll():
        started = time.monotonic()
        r = api.client.post(
            "/api/v1/agents/me/lease", headers=api.headers(agent), json={"wait_s": 30}
        )
        got["status"], got["waited"] = r.status_code, time.monotonic() - started

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(1.0)  # the agent is waiting now (no ready run existed)
    assert submit(api).status_code == 201
    poller.join(40)
    assert got["status"] == 200
    # Woken by the submit, not by a re-check (120 s) or the end of its wait (30 s).
    assert got["waited"] < 20, got
