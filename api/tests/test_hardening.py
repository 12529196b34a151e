"""The hardening issue's findings, each pinned by a test that failed before its fix:
who speaks is proven, nothing is answered before it is durable, and every bad
input is a 4xx that changes nothing."""

import hashlib
import json
import threading

import pytest
from reprofarm_db import tokens
from reprofarm_db.engine import transaction
from reprofarm_db.models import Agent, ApiToken, Artifact, Job, Run
from sqlalchemy import func, select, text

from tests.api_calls import lease, make_build, register, run_count, submit
from tests.factories import hardware, machine_secret

HUNG = {
    "status": "hung",
    "reason": "stall",
    "iterations": 10,
    "duration_s": 1.0,
    "cpu_set": [0],
    "requested_cpu_set": [0],
    "gomaxprocs": 1,
    "exit_code": None,
}


def registration(name, secret, **extra):
    body = {
        "name": name,
        "pools": ["windows-arm64"],
        "hardware": hardware().model_dump(mode="json"),
        "machine_secret": secret,
    }
    return {**body, **extra}


def leased_run(api, tmp_path):
    """Agent A holding a lease, and agent B, another registered machine."""
    a = register(api, "agent-a")
    b = register(api, "agent-b")
    submit(api, repeats=2)
    make_build(api, tmp_path / "hangtest.exe")
    return a, b, lease(api, a)


# -- 1. identity and leases --------------------------------------------------


def test_an_agent_token_cannot_take_another_agents_name(api):
    register(api, "agent-a")
    b = register(api, "agent-b")
    r = api.client.post(
        "/api/v1/agents/register",
        headers=api.headers(b),
        json=registration("agent-a", machine_secret("agent-b")),
    )
    assert r.status_code == 403
    assert "only its own agent" in r.json()["detail"]["message"]


def test_an_enrollment_token_cannot_take_a_name_bound_to_another_machine(api):
    a = register(api, "agent-a")
    r = api.client.post(
        "/api/v1/agents/register",
        headers=api.headers(api.token("agent")),
        json=registration("agent-a", "x" * 40),
    )
    assert r.status_code == 409
    assert "another machine" in r.json()["detail"]["message"]
    # A keeps its identity: its token still works
    r = api.client.post("/api/v1/agents/me/lease", headers=api.headers(a), json={"wait_s": 0})
    assert r.status_code == 204


def test_the_same_machine_and_an_admin_may_register_a_name_again(api):
    register(api, "agent-a")
    same = api.client.post(
        "/api/v1/agents/register",
        headers=api.headers(api.token("agent")),
        json=registration("agent-a", machine_secret("agent-a")),
    )
    assert same.status_code == 200
    admin = api.client.post(
        "/api/v1/agents/register",
        headers=api.headers(api.admin),
        json=registration("agent-a", "n" * 40),
    )
    assert admin.status_code == 200
    assert admin.json()["agent_id"] == same.json()["agent_id"]


def test_another_agent_cannot_heartbeat_upload_or_report_a_leased_run(api, tmp_path):
    _a, b, run = leased_run(api, tmp_path)
    rid = run["run_id"]
    stolen = {**api.headers(b), "X-Lease-Token": run["lease_token"]}
    beat = api.client.post(f"/api/v1/runs/{rid}/heartbeat", headers=stolen, json={})
    assert beat.status_code == 409
    put = api.client.put(
        f"/api/v1/runs/{rid}/artifacts/g.txt",
        headers={
            **stolen,
            "X-Artifact-Kind": "goroutines",
            "X-Artifact-Sha256": hashlib.sha256(b"x").hexdigest(),
            "X-Artifact-Size": "1",
        },
        content=b"x",
    )
    assert put.status_code == 409
    assert api.client.get(f"/api/v1/runs/{rid}/artifacts/g.txt", headers=stolen).status_code == 409
    result = api.client.post(f"/api/v1/runs/{rid}/result", headers=stolen, json={"result": HUNG})
    assert result.status_code == 409
    with transaction(api.client.app.state.sessions) as s:
        stored = s.get(Run, rid)
        assert (stored.status, stored.result) == ("leased", None)
        assert s.scalar(select(func.count()).select_from(Artifact)) == 0


def test_the_agents_own_token_without_the_lease_secret_proves_nothing(api, tmp_path):
    a, _b, run = leased_run(api, tmp_path)
    rid = run["run_id"]
    for lease_header, status in (({}, 403), ({"X-Lease-Token": "not-the-secret"}, 403)):
        h = {**api.headers(a), **lease_header}
        beat = api.client.post(f"/api/v1/runs/{rid}/heartbeat", headers=h, json={})
        assert beat.status_code == status
        r = api.client.post(f"/api/v1/runs/{rid}/result", headers=h, json={"result": HUNG})
        assert r.status_code == status
        assert "X-Lease-Token" in r.json()["detail"]["message"]
    ok = api.client.post(
        f"/api/v1/runs/{rid}/result", headers=run["headers"], json={"result": HUNG}
    )
    assert ok.json()["counted"] is True


# -- 3. nothing answered before it is durable ----------------------------------


def test_a_commit_that_fails_is_an_error_for_the_client_and_changes_nothing(api, tmp_path):
    """A deferred constraint trigger raises only at COMMIT: the handler has
    finished without error, so only a commit inside the request shows it."""
    _a, _b, run = leased_run(api, tmp_path)
    with transaction(api.client.app.state.sessions) as s:
        s.execute(
            text(
                "CREATE FUNCTION refuse_424242() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN IF NEW.iterations = 424242 THEN RAISE EXCEPTION 'refused at commit'; "
                "END IF; RETURN NEW; END $$"
            )
        )
        s.execute(
            text(
                "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER UPDATE ON runs "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_424242()"
            )
        )
    r = api.client.post(
        f"/api/v1/runs/{run['run_id']}/heartbeat",
        headers=run["headers"],
        json={"iterations": 424242, "elapsed_s": 1},
    )
    assert r.status_code >= 500, r.text
    assert "lease_valid" not in r.text
    with transaction(api.client.app.state.sessions) as s:
        assert s.get(Run, run["run_id"]).iterations == 0


# -- 4. 500s that must be 4xx -------------------------------------------------

HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/jobs/{HUGE}",
        f"/api/v1/jobs?offset={HUGE}",
        f"/api/v1/stats?job_id={HUGE}",
        f"/api/v1/runs/{HUGE}",
        f"/api/v1/artifacts/{HUGE}",
        "/api/v1/stats?group_by=&job_id=999",
    ],
)
def test_out_of_range_queries_are_422(api, path):
    r = api.client.get(path, headers=api.headers(api.admin))
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"]


@pytest.mark.parametrize("field", ["duration_s", "stall_timeout_s", "control_chance"])
@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_in_a_job_are_422(api, field, token):
    register(api)
    body = '{"scenario": "control-deadlock", "%s": %s}' % (field, token)  # noqa: UP031
    r = api.client.post(
        "/api/v1/jobs",
        headers={**api.headers(api.admin), "Content-Type": "application/json"},
        content=body,
    )
    assert r.status_code == 422, r.text
    # control_chance is a list (an axis): its item is named, control_chance.0
    assert r.json()["detail"]["field"].split(".")[0] == field
    assert run_count(api) == 0


def test_out_of_range_agent_numbers_are_422(api, tmp_path):
    _a, _b, run = leased_run(api, tmp_path)
    for beat in ('{"iterations": 1e20}', '{"iterations": %s}' % HUGE, '{"elapsed_s": NaN}'):  # noqa: UP031
        r = api.client.post(
            f"/api/v1/runs/{run['run_id']}/heartbeat",
            headers={**run["headers"], "Content-Type": "application/json"},
            content=beat,
        )
        assert r.status_code == 422, (beat, r.text)
    big = registration("agent-c", "c" * 40)
    big["hardware"]["logical_cpus"] = int(HUGE)
    r = api.client.post("/api/v1/agents/register", headers=api.headers(api.admin), json=big)
    assert r.status_code == 422
    assert r.json()["detail"]["field"] == "hardware.logical_cpus"


def test_concurrent_uploads_of_one_artifact_never_fail_with_500(api, tmp_path):
    _a, _b, run = leased_run(api, tmp_path)
    data = b"x" * (900 << 10)  # under the fixture's 1 MiB artifact limit
    headers = {
        **run["headers"],
        "X-Artifact-Kind": "core",
        "X-Artifact-Sha256": hashlib.sha256(data).hexdigest(),
        "X-Artifact-Size": str(len(data)),
    }
    url = f"/api/v1/runs/{run['run_id']}/artifacts/core.gz"
    statuses: list[int] = []

    def put():
        chunks = (data[i : i + 65536] for i in range(0, len(data), 65536))
        statuses.append(api.client.put(url, headers=headers, content=chunks).status_code)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(code in (200, 409) for code in statuses), statuses
    assert 200 in statuses
    state = api.client.get(url, headers=run["headers"]).json()
    if not state["complete"]:  # every try collided: the agent resumes
        assert api.client.put(url, headers=headers, content=data).status_code == 200
    assert api.client.get(url, headers=run["headers"]).json()["complete"] is True


# -- 5. size limits -------------------------------------------------------------


def test_a_5_mb_job_body_is_413_and_stores_nothing(api):
    register(api)
    body = json.dumps({"scenario": "control-deadlock", "pools": ["p" * (5 << 20)]})
    r = api.client.post(
        "/api/v1/jobs?dry_run=true",
        headers={**api.headers(api.admin), "Content-Type": "application/json"},
        content=body,
    )
    assert r.status_code == 413
    assert r.json()["detail"]["field"] == "body"
    assert run_count(api) == 0


def test_a_422_never_echoes_a_large_input(api):
    register(api)
    long_pool = "p" * 500_000
    r = api.client.post(
        "/api/v1/jobs",
        headers=api.headers(api.admin),
        json={"scenario": "control-deadlock", "pools": [long_pool]},
    )
    assert r.status_code == 422
    assert r.json()["detail"]["field"] == "pools.0"
    assert len(r.content) < 5000


# -- 6. validation gaps ----------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"logical_cpus": -1}, "hardware.logical_cpus"),
        ({"os": ""}, "hardware.os"),
        ({"arch": "/"}, "hardware.arch"),
        ({"fingerprint": "nope"}, "hardware.fingerprint"),
    ],
)
def test_impossible_hardware_facts_are_refused(api, change, field):
    body = registration("agent-c", "c" * 40)
    body["hardware"].update(change)
    r = api.client.post("/api/v1/agents/register", headers=api.headers(api.admin), json=body)
    assert r.status_code == 422
    assert r.json()["detail"]["field"] == field
    with transaction(api.client.app.state.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Agent)) == 0


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"pools": ["lab\x00one"]}, "pools.0"),
        ({"affinities": ["mask:0xZZ"]}, "affinities"),
        ({"affinities": ["mask:0x0"]}, "affinities"),
        ({"go_versions": ["1.\u0662\u0667"]}, "go_versions"),
        ({"selector": {"colour": "red"}}, "selector"),
    ],
)
def test_jobs_the_agents_would_refuse_are_refused_by_the_api(api, spec, field):
    register(api)
    r = submit(api, **spec)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"] == field
    assert run_count(api) == 0


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"cpus": list(range(1, 61))}, "cpus"),
        ({"affinities": ["compact", "spread", "all"], "repeats": 20}, "repeats"),
        ({"affinities": ["compact", "spread", "all", "mask:0x1", "mask:0x2"] * 12}, "affinities"),
    ],
)
def test_an_oversize_job_names_the_axis_that_makes_it_large(api, spec, field):
    register(api, cpus=64)
    r = submit(api, **spec)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"] == field


# -- 7. smaller ones ---------------------------------------------------------------


def test_a_refused_first_upload_leaves_no_row_and_no_file(api, tmp_path):
    _a, _b, run = leased_run(api, tmp_path)
    url = f"/api/v1/runs/{run['run_id']}/artifacts/core.gz"
    meta = {"X-Artifact-Kind": "core", "X-Artifact-Sha256": "0" * 64, "X-Artifact-Size": "4"}
    r = api.client.put(url, headers={**run["headers"], **meta}, content=b"abcdefgh")
    assert r.status_code == 413
    with transaction(api.client.app.state.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Artifact)) == 0
    assert list((api.settings.artifact_dir / "partial").iterdir()) == []


@pytest.mark.parametrize("encoded", ["%2E", "%2E%2E"])
def test_dot_names_are_not_artifact_names(api, tmp_path, encoded):
    _a, _b, run = leased_run(api, tmp_path)
    meta = {"X-Artifact-Kind": "core", "X-Artifact-Sha256": "0" * 64, "X-Artifact-Size": "1"}
    url = f"/api/v1/runs/{run['run_id']}/artifacts/{encoded}"
    r = api.client.put(url, headers={**run["headers"], **meta}, content=b"x")
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"] == "name"


def test_upload_state_of_a_missing_run_is_404(api, tmp_path):
    _a, _b, run = leased_run(api, tmp_path)
    r = api.client.get("/api/v1/runs/987654/artifacts/g.txt", headers=run["headers"])
    assert r.status_code == 404


def test_idempotency_keys_belong_to_their_token(api):
    register(api)
    with transaction(api.client.app.state.sessions) as s:
        first = tokens.create(s, name="qa-1", role="submitter")
        second = tokens.create(s, name="qa-2", role="submitter")
    body = {"scenario": "pipe-close-race", "duration_s": 5}
    one = api.client.post(
        "/api/v1/jobs", headers={**api.headers(first), "Idempotency-Key": "k"}, json=body
    )
    two = api.client.post(
        "/api/v1/jobs", headers={**api.headers(second), "Idempotency-Key": "k"}, json=body
    )
    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["id"] != two.json()["id"]
    with transaction(api.client.app.state.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 2


# -- 8. the OpenAPI document tells the truth ------------------------------------------


NEVER_NOT_FOUND = {
    "PUT /api/v1/pools/{name}": "a pool is a name: setting its controls makes its row",
    "GET /api/v1/signatures/{key}/seen-in-ci": "a key nobody kept a dump of: an empty list",
}
"""Operations with a path value that cannot be 'not found', and why (a 404 documented
there would be false)."""


def test_every_authenticated_operation_documents_its_refusals(api):
    spec = api.client.get("/openapi.json").json()
    public = {("/health", "get"), ("/metrics", "get")}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if (path, method) in public:
                assert "503" in codes, (method, path)
                continue
            missing = {"401", "403", "422", "503"} - codes
            assert not missing, f"{method.upper()} {path} does not document {sorted(missing)}"
            if "{" in path and f"{method.upper()} {path}" not in NEVER_NOT_FOUND:
                assert "404" in codes, f"{method.upper()} {path} does not document 404"
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


def test_revoked_tokens_and_garbage_are_401(api):
    a = register(api, "agent-a")
    with transaction(api.client.app.state.sessions) as s:
        for t in s.scalars(select(ApiToken).where(ApiToken.agent_id.is_not(None))):
            t.revoked_at = t.created_at
    r = api.client.post("/api/v1/agents/me/lease", headers=api.headers(a), json={"wait_s": 0})
    assert r.status_code == 401


def test_a_body_that_is_not_utf8_json_is_a_422_naming_the_body(api):
    r = api.client.post(
        "/api/v1/tokens",
        headers={**api.headers(api.admin), "Content-Type": "application/json"},
        content=b"\xff",
    )
    assert r.status_code == 422
    assert r.json()["detail"]["field"] == "body"
    bad = api.client.post(
        "/api/v1/tokens",
        headers={**api.headers(api.admin), "Content-Type": "application/json"},
        content=b'{"name": ',
    )
    assert (bad.status_code, bad.json()["detail"]["field"]) == (422, "body")


def test_the_longest_agent_name_registers(api):
    name = "n" * 100
    r = api.client.post(
        "/api/v1/agents/register",
        headers=api.headers(api.admin),
        json=registration(name, "m" * 40),
    )
    assert r.status_code == 200, r.text
