"""Who may call which operation: the expectation table that test_role_matrix.py
checks against the real app, one entry per operation of its OpenAPI.

Roles (reprofarm_db.tokens.GRANTS): a viewer reads; a submitter reads, submits
and cancels; an agent token (an enrollment token, or an agent's own after it
registered) registers, leases, heartbeats, uploads, reports and downloads
builds, and reads nothing else; an admin may do everything a role grants. An
operation on a leased run (heartbeat, result, artifact upload and upload state)
also needs the lease: the run leased to this agent, proved by the
``X-Lease-Token`` its lease reply gave. Nobody else gets in, not even with that
token: another agent or an admin is refused with 403 or 409.

The table says what the api must do (the hardening of the lease protocol
included), never what some version of the code happened to do: where the
two disagree, the matrix fails and names the cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Caller(StrEnum):
    ANONYMOUS = "no token"
    GARBAGE = "garbage token"
    VIEWER = "viewer"
    SUBMITTER = "submitter"
    ENROLLMENT = "enrollment token (role agent, not registered)"
    AGENT_A = "agent A"
    AGENT_B = "agent B"
    ADMIN = "admin"
    # Asked only of operations on A's leased run:
    AGENT_A_NO_LEASE_TOKEN = "agent A without X-Lease-Token"
    AGENT_A_WRONG_LEASE_TOKEN = "agent A with a wrong X-Lease-Token"


EVERYONE = frozenset(Caller)
READERS = frozenset({Caller.VIEWER, Caller.SUBMITTER, Caller.ADMIN})
SUBMITTERS = frozenset({Caller.SUBMITTER, Caller.ADMIN})
ADMINS = frozenset({Caller.ADMIN})
REGISTERED_AGENTS = frozenset({Caller.AGENT_A, Caller.AGENT_B})
AGENT_TOKENS = REGISTERED_AGENTS | {Caller.ENROLLMENT, Caller.ADMIN}
LEASE_HOLDER = frozenset({Caller.AGENT_A})
NOT_YOUR_RUN = frozenset({403, 409})
NOT_ANALYSED = frozenset({404})


@dataclass(frozen=True)
class Rule:
    """Who may call an operation and what they get.

    allowed: callers that get ``ok``; everyone else is refused, with 401 when
      they have no valid token, else 403, or what ``refused`` says for them.
    lease: the operation acts on a run leased to agent A and must be proved
      with its X-Lease-Token (the matrix then also asks A without it, and with
      a wrong one).
    public: no token needed; every caller gets ``ok``.
    """

    allowed: frozenset[Caller]
    ok: frozenset[int] = frozenset({200})
    refused: dict[Caller, frozenset[int]] = field(default_factory=dict)
    lease: bool = False
    public: bool = False

    def callers(self) -> list[Caller]:
        """Every caller this operation is asked by, the refused ones first: a
        refusal must not depend on what an allowed call changed before it."""
        lease_only = {Caller.AGENT_A_NO_LEASE_TOKEN, Caller.AGENT_A_WRONG_LEASE_TOKEN}
        asked = [c for c in Caller if self.lease or c not in lease_only]
        return sorted(asked, key=lambda c: c in self.allowed or self.public)

    def expected(self, caller: Caller) -> frozenset[int]:
        if self.public or caller in self.allowed:
            return self.ok
        if caller in (Caller.ANONYMOUS, Caller.GARBAGE):
            return frozenset({401})
        return self.refused.get(caller, frozenset({403}))


def _on_leased_run() -> Rule:
    return Rule(
        LEASE_HOLDER,
        lease=True,
        refused={Caller.AGENT_B: NOT_YOUR_RUN, Caller.ADMIN: NOT_YOUR_RUN},
    )


PUBLIC = Rule(EVERYONE, public=True)

# "METHOD path" as in the OpenAPI (and in schemathesis' labels): the one name
# of an operation that neither a renamed handler nor a new operationId changes.
TABLE: dict[str, Rule] = {
    # QA: jobs and what came of them
    "POST /api/v1/jobs": Rule(SUBMITTERS, ok=frozenset({201})),
    "GET /api/v1/jobs": Rule(READERS),
    "GET /api/v1/jobs/{job_id}": Rule(READERS),
    "POST /api/v1/jobs/{job_id}/cancel": Rule(SUBMITTERS),
    "GET /api/v1/jobs/{job_id}/runs": Rule(READERS),
    "GET /api/v1/runs/{run_id}": Rule(READERS),
    "GET /api/v1/runs/export": Rule(READERS),
    "POST /api/v1/studies": Rule(SUBMITTERS, ok=frozenset({201})),
    "GET /api/v1/studies/{job_id}": Rule(READERS),
    "POST /api/v1/studies/{job_id}/cancel": Rule(SUBMITTERS),
    "GET /api/v1/artifacts/{artifact_id}": Rule(READERS),
    "GET /api/v1/stats": Rule(READERS),
    "GET /api/v1/explain": Rule(READERS),
    "GET /api/v1/builds": Rule(READERS),
    "GET /api/v1/agents": Rule(READERS),
    "GET /api/v1/agents/page": Rule(READERS),
    "GET /api/v1/hardware": Rule(READERS),
    # The analyzer's verdicts. The farm runs no worker, so its dump is not analysed
    # and the answer a reader may get is the documented 404 ("no analysis yet");
    # the bucket key asked for is well formed and unknown (404 too).
    "GET /api/v1/artifacts/{artifact_id}/analysis": Rule(READERS, ok=NOT_ANALYSED),
    "GET /api/v1/artifacts/{artifact_id}/debugger-script": Rule(READERS, ok=NOT_ANALYSED),
    "GET /api/v1/signatures": Rule(READERS),
    "GET /api/v1/signatures/{key}/runs": Rule(READERS, ok=NOT_ANALYSED),
    # Triage of a dump from outside the farm: any reader may ask (keep=true, which stores
    # the dump, needs a submitter: test_triage.py).
    "POST /api/v1/triage": Rule(READERS),
    # Kept dumps: any reader lists a signature's (an empty list for an unknown one); only
    # an admin deletes one (each caller asks to delete a dump kept for it).
    "GET /api/v1/signatures/{key}/seen-in-ci": Rule(READERS),
    "DELETE /api/v1/triage/kept/{dump_id}": Rule(ADMINS, ok=frozenset({204})),
    # The dashboard: who the token is, what changed, and its read models (readers only;
    # an agent token reads nothing but what it runs).
    "GET /api/v1/whoami": Rule(READERS),
    "GET /api/v1/live": Rule(READERS),
    "GET /api/v1/views/overview": Rule(READERS),
    "GET /api/v1/views/go-comparison": Rule(READERS),
    "GET /api/v1/views/jobs": Rule(READERS),
    "GET /api/v1/views/jobs/{job_id}": Rule(READERS),
    "GET /api/v1/views/jobs/{job_id}/runs": Rule(READERS),
    "GET /api/v1/views/runs/{run_id}": Rule(READERS),
    "GET /api/v1/views/hardware": Rule(READERS),
    "GET /api/v1/views/hardware/{fingerprint}": Rule(READERS),
    # Agents. The matrix's register request re-registers agent A under its own
    # name and machine secret: A itself, an enrollment token (the same machine
    # enrolling again) and an admin may; agent B may register only its own name.
    "POST /api/v1/agents/register": Rule(
        frozenset({Caller.ENROLLMENT, Caller.AGENT_A, Caller.ADMIN}),
        # An agent's own token registers only that agent: 403 (its role forbids it);
        # an enrollment token and another machine's secret get 409 (test_hardening).
        refused={Caller.AGENT_B: frozenset({403})},
    ),
    # Leasing needs an agent's identity: an admin or an enrollment token has none.
    "POST /api/v1/agents/me/lease": Rule(REGISTERED_AGENTS, ok=frozenset({200, 204})),
    "GET /api/v1/builds/{build_id}/binary": Rule(AGENT_TOKENS),
    "POST /api/v1/runs/{run_id}/heartbeat": _on_leased_run(),
    "POST /api/v1/runs/{run_id}/result": _on_leased_run(),
    # A batch of results carries each lease's secret in its body and answers each
    # result on its own (api/tests/test_results_batch.py): any registered agent is
    # let in, and agent B's try at A's run is refused in its item (409), not the call.
    "POST /api/v1/agents/me/results": Rule(REGISTERED_AGENTS),
    "PUT /api/v1/runs/{run_id}/artifacts/{name}": _on_leased_run(),
    "GET /api/v1/runs/{run_id}/artifacts/{name}": _on_leased_run(),
    # Standing controls: anyone reading sees them; only an admin sets a pool's controls
    # or starts a health check (it takes the agent's next lease).
    "GET /api/v1/pools": Rule(READERS),
    "PUT /api/v1/pools/{name}": Rule(ADMINS),
    "GET /api/v1/harness-problems": Rule(READERS),
    "GET /api/v1/agents/{agent_id}/health-checks": Rule(READERS),
    "POST /api/v1/agents/{agent_id}/health-check": Rule(ADMINS, ok=frozenset({201})),
    # Installing and updating agents (install.ps1 itself is public: PUBLIC_PATHS)
    "GET /api/v1/agent/release": Rule(AGENT_TOKENS),
    "GET /agent/wheels/{filename}": Rule(AGENT_TOKENS),
    # Operations
    "POST /api/v1/tokens": Rule(ADMINS, ok=frozenset({201})),
    "GET /health": PUBLIC,
    "GET /metrics": PUBLIC,
}

# Served without a token and outside the OpenAPI: the schema, its docs, the dashboard,
# the agent's install script (it holds no secret).
PUBLIC_PATHS = (
    "/openapi.json",
    "/docs",
    "/",
    "/index.html",
    "/js/main.js",
    "/style.css",
    "/install.ps1",
)
