"""Work per request is bounded: a comparison too large for one request is refused before
any test runs, and /metrics reads the rollups and index ranges, never a scan of the runs."""

import pytest
from reprofarm_db.engine import transaction
from reprofarm_db.models import Job, Run
from sqlalchemy import event

from tests.factories import register_agent


def _runs(api, outcomes_by_agent):
    with transaction(api.client.app.state.sessions) as s:
        job = Job(spec={}, status="done")
        s.add(job)
        s.flush()
        for name, outcomes in outcomes_by_agent.items():
            agent, _ = register_agent(s, name)
            for status in outcomes:
                s.add(
                    Run(
                        job_id=job.id,
                        status=status,
                        scenario="pipe-close-race",
                        go_version="1.27.3",
                        affinity="compact",
                        agent_id=agent.id,
                        hardware_config_id=agent.hardware_config_id,
                        iterations=10,
                        duration_s=1.0,
                        selector={},
                    )
                )


@pytest.mark.parametrize("api", [{"max_compare_pairs": 2}], indirect=True)
def test_a_comparison_with_more_pairs_than_allowed_is_a_422_naming_compare(api):
    _runs(api, {"a": ["hung", "passed"], "b": ["passed"], "c": ["passed", "passed"]})
    viewer = api.headers(api.token("viewer"))
    ok = api.client.get("/api/v1/stats?group_by=hardware", headers=viewer)
    assert ok.status_code == 200
    refused = api.client.get("/api/v1/stats?group_by=hardware&compare=hardware", headers=viewer)
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert detail["field"] == "compare"
    assert "3 pairs" in detail["message"]
    assert "more than the 2" in detail["message"]


def test_a_comparison_within_the_limit_is_answered(api):
    _runs(api, {"a": ["hung", "passed"], "b": ["passed"]})
    viewer = api.headers(api.token("viewer"))
    done = api.client.get("/api/v1/stats?group_by=hardware&compare=hardware", headers=viewer)
    assert done.status_code == 200
    assert len(done.json()["comparisons"]) == 1


def test_metrics_come_from_the_rollups_and_index_ranges_not_a_scan(api):
    _runs(api, {"a": ["hung", "passed", "lost", "leased"], "b": ["passed", "ready"]})
    statements = []
    engine = api.client.app.state.sessions.kw["bind"]

    def seen(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        text = api.client.get("/metrics").text
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert 'reprofarm_runs_finished{outcome="passed"} 2.0' in text
    assert 'reprofarm_runs_finished{outcome="hung"} 1.0' in text
    assert 'reprofarm_runs_finished{outcome="lost"} 1.0' in text
    assert 'reprofarm_runs_open{status="leased"} 1.0' in text
    assert 'reprofarm_runs_open{status="ready"} 1.0' in text
    assert 'reprofarm_runs_open{status="pending"} 0.0' in text
    grouped = [s for s in statements if "GROUP BY" in s.upper() and "FROM runs" in s]
    assert not grouped, grouped
    assert all("WHERE runs.status =" in s for s in statements if "FROM runs" in s), statements


@pytest.mark.parametrize("api", [{"metrics_token_required": True}], indirect=True)
def test_metrics_can_require_a_viewer_token(api):
    assert api.client.get("/metrics").status_code == 401
    agent_enrollment = api.headers(api.token("agent"))
    assert api.client.get("/metrics", headers=agent_enrollment).status_code == 403
    assert api.client.get("/metrics", headers=api.headers(api.token("viewer"))).status_code == 200
