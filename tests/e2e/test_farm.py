"""Whole-farm scenarios with real processes (see farm.py)."""

import gzip

import httpx
import pytest

from tests.e2e.farm import wait_for


@pytest.mark.needs("gcore")  # asserts core dumps
def test_control_deadlock_job_across_two_pools_gives_dumps_and_rates(farm):
    farm.start_agent("arm-like", ["pool-a"])
    farm.start_agent("vm-like", ["pool-b"])
    wait_for("two agents", lambda: len(farm.call("GET", "/api/v1/agents")) == 2, timeout=60)
    job = farm.call(
        "POST",
        "/api/v1/jobs",
        json={
            "scenario": "control-deadlock",
            "pools": ["pool-a", "pool-b"],
            "duration_s": 15,
            "stall_timeout_s": 2,
            "process_dumps": 1,
            "workers": 4,
        },
    )
    done = farm.wait_job_done(job["id"])
    assert done["runs"]["hung"] == 2
    runs = farm.runs(job["id"])
    assert {r["pool"] for r in runs} == {"pool-a", "pool-b"}
    for run in runs:
        kinds = {a["kind"]: a for a in run["artifacts"]}
        assert set(kinds) >= {"goroutines", "core", "stdout"}
        dump = httpx.get(
            farm.url + kinds["goroutines"]["url"], headers={"Authorization": f"Bearer {farm.admin}"}
        ).text
        assert "lockRightThenLeft" in dump
        core = httpx.get(
            farm.url + kinds["core"]["url"], headers={"Authorization": f"Bearer {farm.admin}"}
        ).content
        assert gzip.decompress(core)[:4] == b"\x7fELF"
    stats = farm.call("GET", "/api/v1/stats", params={"group_by": "pool", "job_id": job["id"]})
    for row in stats["rows"]:
        assert (row["runs"], row["hangs"], row["ci95_high"]) == (1, 1, 1.0)
        assert 0 < row["ci95_low"] < 1

    # The worker analyses every dump as its upload completes: both hangs are the control.
    labelled = wait_for(
        "both runs labelled",
        lambda: all(r["label"] for r in farm.runs(job["id"])) and farm.runs(job["id"]),
        timeout=60,
    )
    assert {r["label"] for r in labelled} == {"control-deadlock"}
    by_label = farm.call(
        "GET", "/api/v1/stats", params={"group_by": "hardware,label", "job_id": job["id"]}
    )
    assert {row["label"] for row in by_label["rows"]} == {"control-deadlock"}
    buckets = farm.call("GET", "/api/v1/signatures", params={"label": "control-deadlock"})
    assert sum(b["runs"] for b in buckets) >= 2
    bucket_runs = farm.call("GET", f"/api/v1/signatures/{labelled[0]['signature_key']}/runs")
    assert labelled[0]["id"] in {r["id"] for r in bucket_runs}
    goroutines = next(a for a in labelled[0]["artifacts"] if a["kind"] == "goroutines")
    analysis = farm.call("GET", f"/api/v1/artifacts/{goroutines['id']}/analysis")
    assert analysis["label"] == "control-deadlock"
    assert analysis["report"]["evidence"]
    core = next(a for a in labelled[0]["artifacts"] if a["kind"] == "core")
    core_analysis = farm.call("GET", f"/api/v1/artifacts/{core['id']}/analysis")
    assert core_analysis["kind"] == "core"


def test_a_killed_agent_loses_its_run_which_reruns_elsewhere_counted_once(farm):
    farm.start_agent("first", ["shared"])
    wait_for("agent", lambda: len(farm.call("GET", "/api/v1/agents")) == 1, timeout=60)
    job = farm.call(
        "POST",
        "/api/v1/jobs",
        json={"scenario": "pipe-close-race", "pools": ["shared"], "duration_s": 8, "workers": 2},
    )
    leased = wait_for(
        "the run to start",
        lambda: [r for r in farm.runs(job["id"]) if r["status"] == "leased"],
        timeout=120,
    )
    farm.start_agent("second", ["shared"])
    farm.kill("first")
    done = farm.wait_job_done(job["id"])
    runs = farm.runs(job["id"])
    lost = [r for r in runs if r["status"] == "lost"]
    passed = [r for r in runs if r["status"] == "passed"]
    assert [r["id"] for r in lost] == [leased[0]["id"]]
    assert len(passed) == 1
    assert passed[0]["retry_of"] == lost[0]["id"]
    assert passed[0]["agent_id"] != lost[0]["agent_id"]
    assert done["runs"]["passed"] == 1
    stats = farm.call("GET", "/api/v1/stats", params={"group_by": "scenario", "job_id": job["id"]})
    (row,) = stats["rows"]
    assert (row["runs"], row["lost"]) == (1, 1)


# Leases outlast the api restart (a few seconds), as the default 60 s ones do.
@pytest.mark.parametrize("farm", [{"lease_s": 60.0}], indirect=True)
def test_redis_and_api_restarts_during_a_job_lose_nothing(farm):
    farm.start_agent("steady", ["lab"])
    wait_for("agent", lambda: len(farm.call("GET", "/api/v1/agents")) == 1, timeout=60)
    farm.redis.stop()
    # Accepted while the broker is down: the job waits in the outbox.
    job = farm.call(
        "POST",
        "/api/v1/jobs",
        json={
            "scenario": "control-deadlock",
            "pools": ["lab"],
            "duration_s": 6,
            "repeats": 3,
            "stall_timeout_s": 2,
            "control_chance": 0.0,
            "workers": 2,
        },
    )
    farm.redis.start()
    wait_for(
        "a run to start",
        lambda: any(r["status"] == "leased" for r in farm.runs(job["id"])),
        timeout=180,
    )
    farm.kill("api")
    farm.start_api()
    done = farm.wait_job_done(job["id"], timeout=300)
    runs = farm.runs(job["id"])
    assert done["runs"]["passed"] == 3, runs
    assert len(runs) == 3  # no attempt was lost, none was counted twice
    assert all(r["result"] is not None for r in runs)
