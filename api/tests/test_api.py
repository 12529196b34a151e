"""The REST api on the real Postgres, through Starlette's TestClient."""

import hashlib

import pytest

from tests.api_calls import make_build, register, run_count, submit


def test_requests_without_a_valid_token_or_role_are_refused(api):
    assert api.client.get("/api/v1/jobs").status_code == 401
    assert api.client.get("/api/v1/jobs", headers=api.headers("rf_nope")).status_code == 401
    viewer = api.token("viewer")
    assert api.client.get("/api/v1/jobs", headers=api.headers(viewer)).status_code == 200
    r = api.client.post("/api/v1/jobs", headers=api.headers(viewer), json={"scenario": "x"})
    assert r.status_code == 403
    assert "submitter" in r.json()["detail"]["message"]
    assert api.client.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scenario": "meltdown"}, "scenario"),
        ({"scenario": "pipe-close-race", "cpus": [0]}, "cpus"),
        ({"scenario": "pipe-close-race", "affinities": ["diagonal"]}, "affinities"),
        ({"scenario": "pipe-close-race", "go_versions": ["latest"]}, "go_versions"),
        ({"scenario": "pipe-close-race", "repeats": 0}, "repeats"),
        ({"scenario": "pipe-close-race", "colour": "red"}, "colour"),
    ],
)
def test_bad_jobs_get_422_naming_the_field_and_change_nothing(api, body, field):
    register(api)
    r = api.client.post("/api/v1/jobs", headers=api.headers(api.admin), json=body)
    assert r.status_code == 422
    assert field in str(r.json()["detail"])
    assert run_count(api) == 0


def test_impossible_jobs_are_refused_with_the_reason(api):
    register(api, cpus=4)
    r = submit(api, repeats=60)
    assert r.status_code == 422
    assert r.json()["detail"]["field"] == "repeats"
    r = submit(api, pools=["windows-x64"])
    assert r.status_code == 422
    assert "no online agent matches" in r.json()["detail"]["message"]
    r = submit(api, cpus=[64])
    assert r.status_code == 422
    assert "64 CPUs" in r.json()["detail"]["message"]
    assert run_count(api) == 0


def test_dry_run_shows_expansion_and_eligible_agents_and_stores_nothing(api):
    register(api, cpus=4)
    r = api.client.post(
        "/api/v1/jobs?dry_run=true",
        headers=api.headers(api.admin),
        json={"scenario": "pipe-close-race", "cpus": [1, 8], "repeats": 2},
    )
    assert r.status_code == 201
    body = r.json()
    assert body["runs"] == 2
    assert body["skipped"][0]["cpus"] == 8
    assert [a["name"] for a in body["eligible_agents"]] == ["arm-1"]
    assert run_count(api) == 0


def test_idempotent_submit_returns_the_same_job(api):
    register(api)
    headers = {**api.headers(api.admin), "Idempotency-Key": "qa-42"}
    body = {"scenario": "pipe-close-race", "repeats": 3}
    first = api.client.post("/api/v1/jobs", headers=headers, json=body)
    again = api.client.post("/api/v1/jobs", headers=headers, json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert run_count(api) == 3
    other = api.client.post("/api/v1/jobs", headers=headers, json={"scenario": "socket-pipe-mix"})
    assert other.status_code == 409


def test_agent_leases_heartbeats_uploads_and_reports(api, tmp_path):
    agent = register(api)
    job = submit(api, repeats=1).json()
    make_build(api, tmp_path / "hangtest.exe")
    h = api.headers(agent)
    lease = api.client.post("/api/v1/agents/me/lease", headers=h, json={"wait_s": 1})
    assert lease.status_code == 200, lease.text
    run = lease.json()
    assert run["job_id"] == job["id"]
    binary = api.client.get(run["build"]["url"], headers=h)
    h = {**h, "X-Lease-Token": run["lease_token"]}
    assert hashlib.sha256(binary.content).hexdigest() == run["build"]["sha256"]
    beat = api.client.post(
        f"/api/v1/runs/{run['run_id']}/heartbeat",
        headers=h,
        json={"iterations": 100, "elapsed_s": 1.5},
    )
    assert beat.json()["lease_valid"] is True
    assert beat.json()["cancel"] is False

    dump = b"goroutine 1 [semacquire]:\n" * 1000
    sha = hashlib.sha256(dump).hexdigest()
    url = f"/api/v1/runs/{run['run_id']}/artifacts/goroutines.txt"
    meta = {
        "X-Artifact-Kind": "goroutines",
        "X-Artifact-Sha256": sha,
        "X-Artifact-Size": str(len(dump)),
    }
    part = api.client.put(
        url,
        headers={**h, **meta, "Content-Range": f"bytes 0-9999/{len(dump)}"},
        content=dump[:10000],
    )
    assert part.json() == {
        "name": "goroutines.txt",
        "received": 10000,
        "bytes": len(dump),
        "complete": False,
    }
    wrong = api.client.put(
        url, headers={**h, **meta, "Content-Range": f"bytes 5-9/{len(dump)}"}, content=dump[5:10]
    )
    assert wrong.status_code == 409
    assert api.client.get(url, headers=h).json()["received"] == 10000
    rest = api.client.put(
        url,
        headers={**h, **meta, "Content-Range": f"bytes 10000-{len(dump) - 1}/{len(dump)}"},
        content=dump[10000:],
    )
    assert rest.json()["complete"] is True

    hung = {
        "status": "hung",
        "reason": "stall",
        "iterations": 100,
        "duration_s": 2.0,
        "cpu_set": [0],
        "requested_cpu_set": [0],
        "gomaxprocs": 1,
        "exit_code": None,
    }
    ack = api.client.post(f"/api/v1/runs/{run['run_id']}/result", headers=h, json={"result": hung})
    assert ack.json() == {"run_id": run["run_id"], "status": "hung", "counted": True}
    again = api.client.post(
        f"/api/v1/runs/{run['run_id']}/result", headers=h, json={"result": hung}
    )
    assert again.json()["counted"] is False

    viewer = api.headers(api.token("viewer"))
    shown = api.client.get(f"/api/v1/runs/{run['run_id']}", headers=viewer).json()
    (artifact,) = shown["artifacts"]
    assert api.client.get(artifact["url"], headers=viewer).content == dump
    assert api.client.get(f"/api/v1/jobs/{job['id']}", headers=viewer).json()["status"] == "done"
    rows = api.client.get("/api/v1/stats?group_by=hardware,go_version", headers=viewer).json()
    assert rows["rows"][0]["hangs"] == 1
    assert rows["rows"][0]["ci95_high"] == 1.0


def test_bad_uploads_are_refused_and_keep_nothing(api, tmp_path):
    agent = register(api)
    submit(api)
    make_build(api, tmp_path / "hangtest.exe")
    h = api.headers(agent)
    run = api.client.post("/api/v1/agents/me/lease", headers=h, json={"wait_s": 1}).json()
    h = {**h, "X-Lease-Token": run["lease_token"]}
    url = f"/api/v1/runs/{run['run_id']}/artifacts/core.gz"
    meta = {"X-Artifact-Kind": "core", "X-Artifact-Sha256": "0" * 64, "X-Artifact-Size": "4"}
    r = api.client.put(url, headers={**h, **meta}, content=b"abcd")
    assert r.status_code == 422
    assert r.json()["detail"]["field"] == "X-Artifact-Sha256"
    assert api.client.get(url, headers=h).json()["received"] == 0
    too_big = {**meta, "X-Artifact-Size": str(2 << 20)}
    assert api.client.put(url, headers={**h, **too_big}, content=b"x").status_code == 413
    bad_kind = {**meta, "X-Artifact-Kind": "photo"}
    r = api.client.put(url, headers={**h, **bad_kind}, content=b"abcd")
    assert r.json()["detail"]["field"] == "X-Artifact-Kind"


def test_lease_long_poll_returns_204_when_there_is_no_work(api):
    agent = register(api)
    r = api.client.post("/api/v1/agents/me/lease", headers=api.headers(agent), json={"wait_s": 0.5})
    assert r.status_code == 204
    r = api.client.post(
        "/api/v1/agents/me/lease", headers=api.headers(api.token("agent")), json={"wait_s": 0}
    )
    assert r.status_code == 403  # an enrollment token must register first


def test_openapi_describes_every_operation(api):
    spec = api.client.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), f"{method.upper()} {path} has no summary"
    assert "Bearer" in spec["info"]["description"]
