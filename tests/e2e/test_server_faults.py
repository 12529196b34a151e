"""Faults on the controller's side, for real: the Postgres server restarted
under a running job, the Celery worker killed with SIGKILL in the middle of a
build, and the network between one agent and the api cut for longer than a
lease. Whole farms of real processes (farm.py); nothing is mocked."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest

from tests.capabilities import postgres_cluster
from tests.e2e.farm import Farm, RedisServer, wait_for
from tests.e2e.tcp_proxy import TcpProxy
from tests.fixtures import PG_ADMIN

LAB = ["lab"]


@pytest.fixture
def fault_farm(request, tmp_path, postgres_url, build_cache, hangtest_build) -> Iterator[Farm]:
    """api + worker + beat on a scratch Postgres database and a private Redis.
    Options (indirect parametrization): ``lease_s``; ``warm`` (default True:
    the worker finds hangtest in the session's build cache instead of spending
    half a minute compiling it); ``env`` for every controller process."""
    options = {"lease_s": 6.0, "warm": True, "env": {}, **getattr(request, "param", {})}
    redis = RedisServer(tmp_path)
    redis.start()
    farm = Farm(
        root=tmp_path,
        database_url=postgres_url,
        redis=redis,
        lease_s=options["lease_s"],
        shared_builds=build_cache if options["warm"] else None,
    )
    farm.prepare()
    env = options["env"]
    farm.start("api", ["api", "--port", str(farm.port)], **env)
    wait_for("api health", farm._healthy, timeout=60)
    farm.start("worker", ["worker", "--concurrency", "2"], **env)
    farm.start("beat", ["beat"], **env)
    yield farm
    farm.stop_all()
    redis.stop()
    for log in sorted(tmp_path.glob("*.log")):
        print(f"===== {log.name}\n{log.read_text(errors='replace')[-4000:]}")


def agents_online(farm: Farm, n: int) -> None:
    wait_for(f"{n} agents", lambda: len(farm.call("GET", "/api/v1/agents")) == n, timeout=60)


def submit(farm: Farm, **spec: Any) -> int:
    job: dict[str, Any] = farm.call("POST", "/api/v1/jobs", json={"pools": LAB, **spec})
    return int(job["id"])


def leased_runs(farm: Farm, job_id: int, n: int) -> list[dict[str, Any]]:
    def leased() -> list[dict[str, Any]] | None:
        runs = [r for r in farm.runs(job_id) if r["status"] == "leased"]
        return runs if len(runs) >= n else None

    runs: list[dict[str, Any]] = wait_for(f"{n} leased runs", leased, timeout=120, every=0.2)
    return runs


def stats_row(farm: Farm, job_id: int) -> dict[str, Any]:
    stats = farm.call("GET", "/api/v1/stats", params={"group_by": "scenario", "job_id": job_id})
    (row,) = stats["rows"]
    return dict(row)


# -- Postgres restarted mid-job ---------------------------------------------------

PG_CTL = ["pg_ctlcluster", "--skip-systemctl-redirect", postgres_cluster() or "", "main"]


def _postgres_accepts() -> bool:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def postgres_stopped() -> Iterator[None]:
    """The shared Postgres server, stopped for real (fast: sessions are cut);
    always started again, whatever the block does."""
    subprocess.run([*PG_CTL, "stop", "--mode=fast"], check=True, timeout=60)
    try:
        yield
    finally:
        subprocess.run([*PG_CTL, "start"], check=True, timeout=60)
        wait_for("postgres", _postgres_accepts, timeout=60, every=0.2)


@pytest.mark.needs("postgres-cluster")
@pytest.mark.parametrize("fault_farm", [{"lease_s": 20.0}], indirect=True)
def test_postgres_restart_mid_job_answers_503_then_recovers_counting_each_run_once(fault_farm):
    farm = fault_farm
    farm.start_agent("pg-a", LAB)
    farm.start_agent("pg-b", LAB)
    agents_online(farm, 2)
    job_id = submit(farm, scenario="pipe-close-race", duration_s=10, workers=2, repeats=2)
    leased_runs(farm, job_id, 2)
    api_pid = farm.processes["api"].pid
    admin = {"Authorization": f"Bearer {farm.admin}"}
    answers: dict[str, tuple[int, str, float]] = {}
    with postgres_stopped():
        # Every request below needs the database (the token is checked there).
        for method, path, body in [
            ("GET", f"/api/v1/jobs/{job_id}", None),
            ("GET", f"/api/v1/jobs/{job_id}/runs", None),
            ("POST", "/api/v1/jobs", {"scenario": "pipe-close-race", "pools": LAB}),
        ]:
            started = time.monotonic()
            try:
                r = httpx.request(method, farm.url + path, json=body, headers=admin, timeout=15)
            except httpx.TimeoutException:
                pytest.fail(f"{method} {path} hung for 15 s while Postgres was down")
            answers[f"{method} {path}"] = (r.status_code, r.text, time.monotonic() - started)
    assert {k: v[0] for k, v in answers.items()} == dict.fromkeys(answers, 503), answers
    assert all("database" in text for _, text, _ in answers.values()), answers
    # The same api process answers again: its pool pings and reconnects.
    wait_for(
        "the api to answer again",
        lambda: httpx.get(farm.url + f"/api/v1/jobs/{job_id}", headers=admin).status_code == 200,
        timeout=30,
    )
    assert farm.processes["api"].pid == api_pid
    assert farm.processes["api"].poll() is None, "the api died: it was not meant to restart"
    done = farm.wait_job_done(job_id, timeout=120)
    runs = farm.runs(job_id)
    assert [(r["status"], r["attempt"]) for r in runs] == [("passed", 1), ("passed", 1)], runs
    assert all(r["result"] is not None for r in runs)
    assert done["runs"]["passed"] == 2
    assert len(farm.call("GET", "/api/v1/jobs")) == 1, "the POST answered 503 stored a job"
    row = stats_row(farm, job_id)
    assert (row["runs"], row["hangs"]) == (2, 0)


# -- the Celery worker killed mid-task -------------------------------------------


def _build_under_way(farm: Farm) -> bool:
    """go is compiling in the build's temporary folder (build.py) and has more
    than half of what it compiles in its cache (about 270 entries for hangtest
    with go1.27 from cold): well into the task, with seconds of it still ahead.
    Killing late keeps the rebuild short, shorter than the visibility timeout."""
    cache = farm.root / "controller" / "builds"
    if not any((cache / "builds").glob(".build-*")):
        return False
    return sum(1 for _ in (cache / "gocache").rglob("*-d")) >= 150


# Cold build cache: compiling hangtest and the standard library takes tens of
# seconds, the window the kill lands in. The visibility timeout is how long
# Redis keeps the dead worker's unacknowledged task before handing it out again
# (settings.py); short for the test, yet longer than the rebuild, else the
# running rebuild is handed out a second time (harmless, tasks are idempotent,
# but twice the work).
VISIBILITY = {"REPROFARM_BROKER_VISIBILITY_TIMEOUT_S": "25"}


@pytest.mark.parametrize("fault_farm", [{"warm": False, "env": VISIBILITY}], indirect=True)
def test_worker_killed_mid_build_redoes_it_once_and_the_job_completes(fault_farm):
    farm = fault_farm
    farm.start_agent("steady", LAB)
    agents_online(farm, 1)
    job_id = submit(farm, scenario="pipe-close-race", duration_s=2, workers=2, repeats=2)
    wait_for("the build to be under way", lambda: _build_under_way(farm), timeout=90, every=0.1)
    farm.kill("worker")  # SIGKILL to the worker and its go build
    assert farm.call("GET", "/api/v1/builds") == [], "the kill came after the build was recorded"
    assert {r["status"] for r in farm.runs(job_id)} == {"pending"}
    farm.start("worker", ["worker", "--concurrency", "2"], **VISIBILITY)
    done = farm.wait_job_done(job_id, timeout=150)
    builds = farm.call("GET", "/api/v1/builds")
    assert [b["target"] for b in builds] == ["linux/amd64"], "the build was recorded twice"
    runs = farm.runs(job_id)
    assert [(r["status"], r["attempt"]) for r in runs] == [("passed", 1), ("passed", 1)], runs
    assert done["runs"]["passed"] == 2
    assert stats_row(farm, job_id)["runs"] == 2


# -- the network between one agent and the api cut for longer than a lease --------


@pytest.mark.needs("gcore")  # asserts core dumps
@pytest.mark.parametrize("fault_farm", [{"lease_s": 4.0}], indirect=True)
def test_agent_cut_off_past_its_lease_loses_the_run_then_delivers_its_late_evidence(fault_farm):
    farm = fault_farm
    with TcpProxy(farm.port) as link:
        farm.start_agent("cut-off", LAB, api=link.url)
        agents_online(farm, 1)
        job_id = submit(
            farm,
            scenario="control-deadlock",
            duration_s=20,
            stall_timeout_s=2,
            process_dumps=1,
            workers=4,
        )
        (first,) = leased_runs(farm, job_id, 1)
        # Cut once hangtest runs (its events are being logged), not while the
        # agent still fetches the build.
        events = farm.root / "cut-off" / "runs" / f"run-{first['id']}" / "stdout.jsonl"
        wait_for("hangtest to start", lambda: events.exists() and events.stat().st_size, timeout=60)
        link.cut()
        farm.start_agent("other", LAB)
        # The cut-off agent finishes its run and spools the result; the api,
        # hearing nothing for a lease, calls the run lost and retries it.
        spooled = farm.root / "cut-off" / "spool" / f"run-{first['id']}.json"
        wait_for("the cut-off agent to spool its result", spooled.exists, timeout=60)
        lost = wait_for(
            "the run to be lost",
            lambda: next(
                (r for r in farm.runs(job_id) if r["id"] == first["id"] and r["status"] == "lost"),
                None,
            ),
            timeout=60,
        )
        assert lost["late_result"] is None
        link.restore()

        def late_evidence() -> dict[str, Any] | None:
            run = next(r for r in farm.runs(job_id) if r["id"] == first["id"])
            complete = {a["kind"] for a in run["artifacts"] if a["complete"]}
            ok = run["late_result"] is not None and complete >= {"goroutines", "core", "stdout"}
            return run if ok else None

        late = wait_for("the late result and its artifacts", late_evidence, timeout=90)
        done = farm.wait_job_done(job_id, timeout=120)
    runs = farm.runs(job_id)
    (retry,) = [r for r in runs if r["retry_of"] == first["id"]]
    assert len(runs) == 2, runs
    assert late["status"] == "lost", "a late result must not count"
    assert late["late_result"]["status"] == "hung"
    assert retry["status"] == "hung"
    assert retry["agent_id"] != first["agent_id"]
    assert (done["runs"]["hung"], done["runs"]["lost"]) == (1, 1)
    row = stats_row(farm, job_id)
    assert (row["runs"], row["hangs"], row["lost"]) == (1, 1, 1)
    assert not spooled.exists(), "the delivered result stays in the spool"
    assert not (farm.root / "cut-off" / "runs" / f"run-{first['id']}").exists()
