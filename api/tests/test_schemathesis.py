"""The api fuzzed from its own OpenAPI with schemathesis, on the real app and
Postgres, once with an admin token and once with a registered agent's token.

Every operation gets schemathesis' phases (the schema's examples, boundary
"coverage" cases, then random fuzzing) and four checks: no 5xx, every status
code documented, a documented content type, and a body matching the schema.
CI runs a small, fixed-seed sample; the nightly-sized run is the same test with
a bigger number (docs/testing.md, "Fuzzing the api"):

    REPROFARM_FUZZ_EXAMPLES=2000 uv run pytest api/tests/test_schemathesis.py --timeout 3600

Environment:
    REPROFARM_FUZZ_EXAMPLES  fuzzing examples per operation (default 25)
    REPROFARM_FUZZ_SEED      the seed (default fixed, so CI sees the same requests
                             every run; use another to explore)

What is pinned instead of generated, and why (nothing is excluded):
- the credentials: each request carries the profile's token (and, as agent A,
  the X-Lease-Token of its leased run), so fuzzed inputs reach the handlers;
  missing, wrong and foreign credentials are test_role_matrix.py's;
- the long-poll lease's wait: a valid `wait_s` (up to 60 s, default 20) would
  hold an example that long when there is no work, so valid waits are cut to
  10 ms before sending; invalid ones (negative, above 60, not numbers) go as
  generated, and the waiting itself is test_api's
  `test_lease_long_poll_returns_204_when_there_is_no_work`.

Each operation stops at its first failure (and whatever distinct failures
Hypothesis meets on the way); docs/testing.md shows how to list every failure
of the whole api at once with the schemathesis CLI.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from reprofarm_api.app import create_app
from reprofarm_db.settings import ControllerSettings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.tests.seed import Farm, seed_farm

if TYPE_CHECKING:
    from api.tests.conftest import Api

EXAMPLES = int(os.environ.get("REPROFARM_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("REPROFARM_FUZZ_SEED", "20261129"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
LEASE = "POST /api/v1/agents/me/lease"
LONG_POLL_CAP_S = 0.01


def _openapi() -> dict[str, Any]:
    """The app's own schema, read at collection so each operation is a test of its
    own. (schemathesis.pytest.from_fixture would load it from a fixture, but it
    fails on pytest 9.2, which dropped the Node._nodeid it rewrites.) Building
    the app connects to nothing; every request goes to the fixture's app."""
    with tempfile.TemporaryDirectory() as data_dir:
        return create_app(ControllerSettings(data_dir=Path(data_dir)), relay=False).openapi()


schema = schemathesis.openapi.from_dict(
    _openapi(),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": EXAMPLES,
                "deterministic": True,  # derandomized: the seed alone decides the requests
                "database": "none",  # no replay of failures saved by an earlier run
                "with-security-parameters": False,  # the fixture's token is sent instead
            },
        }
    ),
)


@pytest.fixture
def farm(api: Api, tmp_path: Path) -> Farm:
    # 50 ready runs (the fixture's per-job limit): fuzzed leases find work at once.
    return seed_farm(api, tmp_path, repeats=50, prefix="fuzz")


def _cap_long_poll(case: schemathesis.Case[Any]) -> None:
    body: Any = case.body
    if case.operation.label != LEASE or not isinstance(body, dict):
        return
    wait = body.get("wait_s", 20.0)  # absent: the server's default
    if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 <= wait <= 60:
        body["wait_s"] = min(wait, LONG_POLL_CAP_S)


def _exercise(case: schemathesis.Case[Any], farm: Farm, headers: dict[str, str]) -> None:
    _cap_long_poll(case)
    case.call_and_validate(app=farm.api.client.app, headers=headers, checks=CHECKS)


# One farm per operation, shared by its examples on purpose: the examples build
# on each other's state (a job a fuzzed submit created, a run a result closed).
shared_farm = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@schema.parametrize()
@shared_farm
def test_fuzzing_as_admin_finds_no_server_error_or_schema_violation(
    case: schemathesis.Case[Any], farm: Farm
) -> None:
    _exercise(case, farm, farm.headers(farm.api.admin))


@schema.parametrize()
@shared_farm
def test_fuzzing_as_an_agent_finds_no_server_error_or_schema_violation(
    case: schemathesis.Case[Any], farm: Farm
) -> None:
    # Agent A's own token and the lease token of its run (in place of generated
    # ones), so fuzzed run ids that hit the leased run reach the handler itself.
    # Missing and wrong lease tokens are test_role_matrix's.
    _exercise(case, farm, {**farm.headers(farm.a.token), "X-Lease-Token": farm.lease_token})
