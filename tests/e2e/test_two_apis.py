"""More than one api process: agents spread over two api replicas share one farm
(Postgres and Redis) without a run leased twice, and a submit on one replica wakes
an idle agent long-polling on the other (Redis pub/sub), not a database poll."""

import time

from tests.e2e.farm import wait_for


def test_two_api_processes_serve_one_farm_without_double_leases(farm):
    second = farm.start_extra_api("api-2")
    for i, url in enumerate([farm.url, second, farm.url, second]):
        farm.start_agent(f"spread-{i}", ["both"], api=url)
    wait_for("four agents", lambda: len(farm.call("GET", "/api/v1/agents")) == 4, timeout=90)
    job = farm.call(
        "POST",
        "/api/v1/jobs",
        json={
            "scenario": "pipe-close-race",
            "pools": ["both"],
            "repeats": 8,
            "duration_s": 2,
            "workers": 2,
        },
    )
    done = farm.wait_job_done(job["id"], timeout=300)
    runs = farm.runs(job["id"])
    assert done["runs"]["passed"] == 8, runs
    assert len(runs) == 8  # no attempt lost, no run leased twice
    assert len({r["agent_id"] for r in runs}) >= 2  # both replicas' agents worked


def test_a_submit_on_one_api_wakes_an_agent_waiting_on_the_other(farm):
    # The second replica re-checks only every 60 s: only a wake-up can be fast.
    second = farm.start_extra_api("api-2", REPROFARM_WORK_RECHECK_S="60")
    farm.start_agent("waiter", ["wake"], api=second)
    wait_for("the agent", lambda: len(farm.call("GET", "/api/v1/agents")) == 1, timeout=90)
    spec = {"scenario": "pipe-close-race", "pools": ["wake"], "duration_s": 1, "workers": 2}
    first = farm.call("POST", "/api/v1/jobs", json=spec)  # builds hangtest for this machine
    farm.wait_job_done(first["id"], timeout=300)
    time.sleep(2)  # the agent is back in its long-poll (20 s) on the second replica
    submitted = time.monotonic()
    job = farm.call("POST", "/api/v1/jobs", json=spec)  # on the first replica
    leased = wait_for(
        "the run to be leased",
        lambda: [r for r in farm.runs(job["id"]) if r["leased_at"]],
        timeout=60,
        every=0.1,
    )
    waited = time.monotonic() - submitted
    assert leased
    assert waited < 10, f"leased {waited:.1f}s after the submit: no wake-up crossed replicas"
