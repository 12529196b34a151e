"""POST /agents/me/results: several results in one call, each proved and stored on
its own (committed before the reply), each answered on its own."""

from reprofarm_db import rollups
from reprofarm_db.engine import transaction
from reprofarm_db.models import Run, RunRollup
from sqlalchemy import func, select

from api.tests.test_role_matrix import HUNG
from tests.api_calls import lease, make_build, register, submit


def _post(api, token, items):
    return api.client.post(
        "/api/v1/agents/me/results", headers=api.headers(token), json={"results": items}
    )


def test_each_result_of_a_batch_is_stored_or_refused_on_its_own(api, tmp_path):
    a, b = register(api, "lab-a"), register(api, "lab-b")
    make_build(api, tmp_path / "hangtest.exe")
    assert submit(api, repeats=3).status_code == 201
    first, second, others = lease(api, a), lease(api, a), lease(api, b)
    items = [
        {"run_id": first["run_id"], "lease_token": first["lease_token"], "result": HUNG},
        {"run_id": second["run_id"], "lease_token": "not-its-secret", "result": HUNG},
        {"run_id": others["run_id"], "lease_token": others["lease_token"], "result": HUNG},
        {"run_id": 2**31 - 1, "lease_token": "x", "result": HUNG},
        {"run_id": first["run_id"], "lease_token": first["lease_token"], "result": HUNG},
    ]
    r = _post(api, a, items)
    assert r.status_code == 200, r.text
    got = [(o["run_id"], o["http_status"], o["status"], o["counted"]) for o in r.json()["results"]]
    assert got == [
        (first["run_id"], 200, "hung", True),
        (second["run_id"], 403, None, False),  # the lease is not proved
        (others["run_id"], 409, None, False),  # another agent's run
        (2**31 - 1, 404, None, False),
        (first["run_id"], 200, "hung", False),  # a repeat changes nothing
    ]
    with transaction(api.client.app.state.sessions) as s:
        statuses = {i["run_id"]: s.get(Run, i["run_id"]).status for i in items[:3]}
    assert statuses == {
        first["run_id"]: "hung",
        second["run_id"]: "leased",
        others["run_id"]: "leased",
    }


def test_a_batch_needs_a_registered_agent_and_at_most_100_results(api):
    a = register(api, "lab-a")
    item = {"run_id": 1, "lease_token": "x", "result": HUNG}
    assert _post(api, api.admin, [item]).status_code == 403  # no agent identity
    assert _post(api, a, []).status_code == 422
    assert _post(api, a, [item] * 101).status_code == 422


def test_a_value_the_database_refuses_refuses_that_result_alone(api, tmp_path):
    """The largest iteration count the wire allows overflows the rollups' counters on
    Postgres, and a NUL in a reason is no Postgres text: each such item is refused (422,
    as the single route answers), the others stored, and the statistics count exactly
    the stored ones (a refused item's counters once reached the next item's flush)."""
    a = register(api, "lab-a")
    make_build(api, tmp_path / "hangtest.exe")
    assert submit(api, repeats=4).status_code == 201
    runs = [lease(api, a) for _ in range(4)]
    huge = {**HUNG, "iterations": 2**63 - 1}
    nul = {**HUNG, "reason": "stuck\x00here"}
    items = [
        {"run_id": r["run_id"], "lease_token": r["lease_token"], "result": result}
        for r, result in zip(runs, [HUNG, huge, nul, HUNG], strict=True)
    ]
    r = _post(api, a, items)
    assert r.status_code == 200, r.text
    assert [o["http_status"] for o in r.json()["results"]] == [200, 422, 422, 200]
    sessions = api.client.app.state.sessions
    with transaction(sessions) as s:
        assert [s.get(Run, i["run_id"]).status for i in items] == [
            "hung",
            "leased",
            "leased",
            "hung",
        ]
        counted = _rollup_totals(s)
        assert counted[0] == 2
    with transaction(sessions) as s:
        rollups.rebuild(s)
    with transaction(sessions) as s:
        assert _rollup_totals(s) == counted, "the rollups counted a refused result"


def _rollup_totals(s):
    return tuple(s.execute(select(func.sum(RunRollup.hung), func.sum(RunRollup.iterations))).one())
