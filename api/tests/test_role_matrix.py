"""Every operation of the OpenAPI, asked by every kind of caller, against the
expectation table in roles.py: who may call it, and whether the run must be
the caller's. Each operation gets a fresh farm (seed.py): agents A and B, a
job, a build, a run leased to A with its lease token, an artifact A uploaded.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from api.tests.roles import PUBLIC_PATHS, TABLE, Caller, Rule
from api.tests.seed import Farm, artifact_upload, registration, seed_farm
from tests.factories import hardware

if TYPE_CHECKING:
    from api.tests.conftest import Api

HUNG = {
    "status": "hung",
    "reason": "stall",
    "iterations": 100,
    "duration_s": 2.0,
    "cpu_set": [0],
    "requested_cpu_set": [0],
    "gomaxprocs": 1,
    "exit_code": None,
}
UPLOAD = b"goroutine 7 [IO wait]:\n" * 50
TRIAGED = b"goroutine 7 [IO wait]:\nmain.main()\n\t/src/main.go:5 +0x1d\n"
"""A dump as triage reads it: a header with a frame (a header alone is prose)."""


@dataclass
class Request:
    """A minimal valid request; ``after`` runs on a 2xx (re-registering agent
    A revokes its token, so the matrix goes on with the new one)."""

    method: str
    url: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    after: Callable[[Farm, httpx.Response], None] | None = None


SEARCH = {
    "kind": "search",
    "scenario": "control-deadlock",
    "control_chance": [0, 1e-3],
    "budget": {"runs": 20},
}


def _fresh_study(farm: Farm) -> int:
    """A study of the farm's agents; each caller gets its own (a cancel is once)."""
    study = farm.api.client.post(
        "/api/v1/studies", headers=farm.headers(farm.api.admin), json=SEARCH
    )
    assert study.status_code == 201, study.text
    job_id: int = study.json()["job_id"]
    return job_id


def _fresh_kept_dump(farm: Farm) -> int:
    """A dump kept for this caller: its own bytes (the same bytes are kept once)."""
    text = TRIAGED.replace(b"main.go:5", f"main.go:{secrets.randbelow(10**9)}".encode())
    r = farm.api.client.post(
        "/api/v1/triage?keep=true", headers=farm.headers(farm.api.admin), content=text
    )
    assert r.status_code == 200, r.text
    assert not r.json()["already_kept"], r.text
    kept_id: int = r.json()["kept_id"]
    return kept_id


def _fresh_job_to_cancel(farm: Farm) -> Request:
    # A job cancelled once is 409 the second time: each caller gets its own.
    job = farm.api.client.post(
        "/api/v1/jobs",
        headers=farm.headers(farm.api.admin),
        json={"scenario": "control-deadlock", "duration_s": 5},
    )
    assert job.status_code == 201, job.text
    return Request("POST", f"/api/v1/jobs/{job.json()['id']}/cancel")


def _a_wheel_of_the_release(farm: Farm) -> Request:
    release = farm.api.client.get("/api/v1/agent/release", headers=farm.headers(farm.api.admin))
    assert release.status_code == 200, release.text
    return Request("GET", f"/agent/wheels/{release.json()['files'][-1]['filename']}")


def _agent_b_id(farm: Farm) -> int:
    listed = farm.api.client.get("/api/v1/agents", headers=farm.headers(farm.api.admin))
    assert listed.status_code == 200, listed.text
    return next(int(a["id"]) for a in listed.json() if a["name"] == farm.b.name)


def _take_a_new_token(farm: Farm, response: httpx.Response) -> None:
    farm.a.token = response.json()["token"]


REQUESTS: dict[str, Callable[[Farm], Request]] = {
    "POST /api/v1/jobs": lambda f: Request(
        "POST", "/api/v1/jobs", json={"scenario": "control-deadlock", "duration_s": 5}
    ),
    "GET /api/v1/jobs": lambda f: Request("GET", "/api/v1/jobs"),
    "GET /api/v1/jobs/{job_id}": lambda f: Request("GET", f"/api/v1/jobs/{f.job_id}"),
    "POST /api/v1/jobs/{job_id}/cancel": _fresh_job_to_cancel,
    "GET /api/v1/jobs/{job_id}/runs": lambda f: Request("GET", f"/api/v1/jobs/{f.job_id}/runs"),
    "GET /api/v1/runs/{run_id}": lambda f: Request("GET", f"/api/v1/runs/{f.run_id}"),
    "GET /api/v1/runs/export": lambda f: Request(
        "GET", f"/api/v1/runs/export?job_id={f.job_id}&format=parquet"
    ),
    "POST /api/v1/studies": lambda f: Request("POST", "/api/v1/studies", json=SEARCH),
    "GET /api/v1/studies/{job_id}": lambda f: Request("GET", f"/api/v1/studies/{_fresh_study(f)}"),
    "POST /api/v1/studies/{job_id}/cancel": lambda f: Request(
        "POST", f"/api/v1/studies/{_fresh_study(f)}/cancel"
    ),
    "GET /api/v1/artifacts/{artifact_id}": lambda f: Request(
        "GET", f"/api/v1/artifacts/{f.artifact_id}"
    ),
    "GET /api/v1/stats": lambda f: Request("GET", "/api/v1/stats?group_by=hardware"),
    "GET /api/v1/explain": lambda f: Request("GET", "/api/v1/explain"),
    "GET /api/v1/builds": lambda f: Request("GET", "/api/v1/builds"),
    "GET /api/v1/agents": lambda f: Request("GET", "/api/v1/agents"),
    "GET /api/v1/agents/page": lambda f: Request("GET", "/api/v1/agents/page?limit=10"),
    "GET /api/v1/hardware": lambda f: Request("GET", "/api/v1/hardware"),
    "GET /api/v1/artifacts/{artifact_id}/analysis": lambda f: Request(
        "GET", f"/api/v1/artifacts/{f.artifact_id}/analysis"
    ),
    "GET /api/v1/artifacts/{artifact_id}/debugger-script": lambda f: Request(
        "GET", f"/api/v1/artifacts/{f.artifact_id}/debugger-script"
    ),
    "GET /api/v1/signatures": lambda f: Request("GET", "/api/v1/signatures"),
    "GET /api/v1/signatures/{key}/runs": lambda f: Request(
        "GET", f"/api/v1/signatures/{'0' * 16}/runs"
    ),
    "POST /api/v1/triage": lambda f: Request("POST", "/api/v1/triage", content=TRIAGED),
    "GET /api/v1/signatures/{key}/seen-in-ci": lambda f: Request(
        "GET", f"/api/v1/signatures/{'0' * 16}/seen-in-ci"
    ),
    "DELETE /api/v1/triage/kept/{dump_id}": lambda f: Request(
        "DELETE", f"/api/v1/triage/kept/{_fresh_kept_dump(f)}"
    ),
    "GET /api/v1/whoami": lambda f: Request("GET", "/api/v1/whoami"),
    "GET /api/v1/live": lambda f: Request("GET", "/api/v1/live"),
    "GET /api/v1/views/overview": lambda f: Request("GET", "/api/v1/views/overview"),
    "GET /api/v1/views/go-comparison": lambda f: Request("GET", "/api/v1/views/go-comparison"),
    "GET /api/v1/views/jobs": lambda f: Request("GET", "/api/v1/views/jobs"),
    "GET /api/v1/views/jobs/{job_id}": lambda f: Request("GET", f"/api/v1/views/jobs/{f.job_id}"),
    "GET /api/v1/views/jobs/{job_id}/runs": lambda f: Request(
        "GET", f"/api/v1/views/jobs/{f.job_id}/runs"
    ),
    "GET /api/v1/views/runs/{run_id}": lambda f: Request("GET", f"/api/v1/views/runs/{f.run_id}"),
    "GET /api/v1/views/hardware": lambda f: Request("GET", "/api/v1/views/hardware"),
    "GET /api/v1/views/hardware/{fingerprint}": lambda f: Request(
        "GET", f"/api/v1/views/hardware/{hardware(cpus=4).fingerprint}"
    ),
    "POST /api/v1/agents/register": lambda f: Request(
        "POST", "/api/v1/agents/register", json=registration(f.a.name), after=_take_a_new_token
    ),
    "POST /api/v1/agents/me/lease": lambda f: Request(
        "POST", "/api/v1/agents/me/lease", json={"wait_s": 0}
    ),
    "GET /api/v1/builds/{build_id}/binary": lambda f: Request(
        "GET", f"/api/v1/builds/{f.build_id}/binary"
    ),
    "POST /api/v1/runs/{run_id}/heartbeat": lambda f: Request(
        "POST", f"/api/v1/runs/{f.run_id}/heartbeat", json={"iterations": 10, "elapsed_s": 1.0}
    ),
    "POST /api/v1/runs/{run_id}/result": lambda f: Request(
        "POST", f"/api/v1/runs/{f.run_id}/result", json={"result": HUNG}
    ),
    "POST /api/v1/agents/me/results": lambda f: Request(
        "POST",
        "/api/v1/agents/me/results",
        json={"results": [{"run_id": f.run_id, "lease_token": f.lease_token, "result": HUNG}]},
    ),
    "PUT /api/v1/runs/{run_id}/artifacts/{name}": lambda f: Request(
        "PUT",
        f"/api/v1/runs/{f.run_id}/artifacts/matrix.txt",
        content=UPLOAD,
        headers=artifact_upload(UPLOAD),
    ),
    "GET /api/v1/runs/{run_id}/artifacts/{name}": lambda f: Request(
        "GET", f"/api/v1/runs/{f.run_id}/artifacts/{f.artifact_name}"
    ),
    "POST /api/v1/tokens": lambda f: Request(
        "POST", "/api/v1/tokens", json={"name": "matrix", "role": "viewer"}
    ),
    "GET /api/v1/pools": lambda f: Request("GET", "/api/v1/pools"),
    "PUT /api/v1/pools/{name}": lambda f: Request(
        "PUT", "/api/v1/pools/linux", json={"negative_control": True}
    ),
    "GET /api/v1/harness-problems": lambda f: Request("GET", "/api/v1/harness-problems"),
    "GET /api/v1/agents/{agent_id}/health-checks": lambda f: Request(
        "GET", f"/api/v1/agents/{_agent_b_id(f)}/health-checks"
    ),
    "POST /api/v1/agents/{agent_id}/health-check": lambda f: Request(
        "POST", f"/api/v1/agents/{_agent_b_id(f)}/health-check", json={"kind": "canary"}
    ),
    "GET /api/v1/agent/release": lambda f: Request("GET", "/api/v1/agent/release"),
    "GET /agent/wheels/{filename}": _a_wheel_of_the_release,
    "GET /health": lambda f: Request("GET", "/health"),
    "GET /metrics": lambda f: Request("GET", "/metrics"),
}


def _operations(openapi: dict[str, Any]) -> set[str]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {
        f"{method.upper()} {path}"
        for path, item in openapi["paths"].items()
        for method in item
        if method in methods
    }


def _credentials(farm: Farm, caller: Caller, rule: Rule, roles: dict[str, str]) -> dict[str, str]:
    """The caller's bearer token and, on a leased run, the lease token: A's own
    for everyone but the two A variants, so B or an admin holding A's proof
    shows that the proof alone is not enough."""
    bearer = {
        Caller.ANONYMOUS: None,
        Caller.GARBAGE: "rf_" + secrets.token_urlsafe(32),
        Caller.VIEWER: roles["viewer"],
        Caller.SUBMITTER: roles["submitter"],
        Caller.ENROLLMENT: farm.enrollment,
        Caller.AGENT_A: farm.a.token,
        Caller.AGENT_A_NO_LEASE_TOKEN: farm.a.token,
        Caller.AGENT_A_WRONG_LEASE_TOKEN: farm.a.token,
        Caller.AGENT_B: farm.b.token,
        Caller.ADMIN: farm.api.admin,
    }[caller]
    headers = {} if bearer is None else farm.headers(bearer)
    if not rule.lease or caller is Caller.AGENT_A_NO_LEASE_TOKEN:
        return headers
    if caller is Caller.AGENT_A_WRONG_LEASE_TOKEN:
        return {**headers, "X-Lease-Token": secrets.token_urlsafe(32)}
    return {**headers, "X-Lease-Token": farm.lease_token}


def test_every_operation_has_an_expectation_and_a_request(api: Api) -> None:
    operations = _operations(api.client.get("/openapi.json").json())
    unlisted = sorted(operations - TABLE.keys())
    assert not unlisted, f"add these operations to roles.TABLE (who may call them): {unlisted}"
    no_request = sorted(operations - REQUESTS.keys())
    assert not no_request, f"add a minimal valid request to REQUESTS for: {no_request}"
    gone = sorted((TABLE.keys() | REQUESTS.keys()) - operations)
    assert not gone, f"these are no longer operations of the api: {gone}"


@pytest.mark.parametrize("operation", sorted(TABLE))
def test_only_the_callers_the_table_names_may_call(
    api: Api, tmp_path: Path, operation: str
) -> None:
    if operation not in REQUESTS:
        pytest.fail(f"{operation}: add a minimal valid request to REQUESTS", pytrace=False)
    rule, build = TABLE[operation], REQUESTS[operation]
    farm = seed_farm(api, tmp_path, prefix="matrix")
    roles = {role: api.token(role) for role in ("viewer", "submitter")}
    disagreements = []
    for caller in rule.callers():
        request = build(farm)
        r = api.client.request(
            request.method,
            request.url,
            headers={**_credentials(farm, caller, rule, roles), **request.headers},
            json=request.json,
            content=request.content,
        )
        expected = rule.expected(caller)
        if r.status_code not in expected:
            disagreements.append(
                f"{caller}: expected {'/'.join(map(str, sorted(expected)))}, "
                f"got {r.status_code} {r.text[:160]}"
            )
        if r.is_success and request.after is not None:
            request.after(farm, r)
    if disagreements:
        pytest.fail(f"{operation}:\n  " + "\n  ".join(disagreements), pytrace=False)


@pytest.mark.parametrize("path", PUBLIC_PATHS)
def test_public_pages_need_no_token(api: Api, path: str) -> None:
    # From the controller itself: install.ps1 needs a trusted Host without REPROFARM_PUBLIC_URL.
    r = api.client.get(path, headers={"Host": "127.0.0.1:8600"})
    assert r.status_code == 200, f"GET {path} without a token: {r.status_code} {r.text[:200]}"
