"""Run lists: paged, with a fixed number of queries per page whatever the runs
and their artifacts (no query per run, job or bucket)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from reprofarm_db import states
from reprofarm_db.engine import transaction
from reprofarm_db.models import Artifact, Job, Run
from reprofarm_protocol.jobs import RunState
from sqlalchemy import event, select

from tests.api_calls import register, submit


def _seed(api, job_id: int, runs: int, artifacts: int, *, signature: str | None = None) -> None:
    """``runs`` more hung runs of the job, each with ``artifacts`` artifacts."""
    with transaction(api.client.app.state.sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None
        rows = [
            Run(
                job_id=job_id,
                status="hung",
                scenario="control-deadlock",
                go_version="1.27.3",
                affinity="compact",
                cpus=1,
                label="other-hang" if signature else None,
                signature=signature,
                signature_key=("f" * 16) if signature else None,
            )
            for _ in range(runs)
        ]
        s.add_all(rows)
        s.flush()
        s.add_all(
            Artifact(
                run_id=r.id,
                name=f"a{i}",
                kind="stdout",
                sha256="0" * 64,
                bytes=1,
                received=1,
                complete=True,
                path="/nowhere",
            )
            for r in rows
            for i in range(artifacts)
        )


def _job(api) -> int:
    register(api)
    r = submit(api, repeats=1)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


@contextmanager
def _statements(api) -> Iterator[list[str]]:
    """Every SQL statement the app sends meanwhile (token checks included)."""
    engine = api.client.app.state.sessions.kw["bind"]
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _get(api, path: str) -> Any:
    r = api.client.get(path, headers=api.headers(api.admin))
    assert r.status_code == 200, r.text
    return r.json()


def test_a_jobs_runs_come_in_pages_of_100_by_default_followed_by_next(api):
    job_id = _job(api)
    _seed(api, job_id, 249, 1)  # 250 with the submitted one
    page = _get(api, f"/api/v1/jobs/{job_id}/runs")
    assert (page["total"], page["limit"], page["offset"], len(page["runs"])) == (250, 100, 0, 100)
    assert page["next"] == f"/api/v1/jobs/{job_id}/runs?limit=100&offset=100"
    ids: list[int] = []
    path: str | None = f"/api/v1/jobs/{job_id}/runs"
    while path is not None:
        page = _get(api, path)
        ids.extend(r["id"] for r in page["runs"])
        path = page["next"]
    assert len(ids) == len(set(ids)) == 250
    assert ids == sorted(ids)
    hung = _get(api, f"/api/v1/jobs/{job_id}/runs?status=hung&limit=200")
    assert (hung["total"], len(hung["runs"])) == (249, 200)
    assert hung["next"] == f"/api/v1/jobs/{job_id}/runs?limit=200&offset=200&status=hung"
    assert all(len(r["artifacts"]) == 1 for r in hung["runs"])


@pytest.mark.parametrize("limit", ["0", "501", "-1", "x"])
def test_a_page_size_outside_1_to_500_is_422_naming_limit(api, limit):
    job_id = _job(api)
    r = api.client.get(f"/api/v1/jobs/{job_id}/runs?limit={limit}", headers=api.headers(api.admin))
    assert r.status_code == 422
    assert r.json()["detail"]["field"] == "limit"


def test_the_largest_page_is_500(api):
    job_id = _job(api)
    _seed(api, job_id, 600, 0)
    page = _get(api, f"/api/v1/jobs/{job_id}/runs?limit=500")
    assert (len(page["runs"]), page["total"]) == (500, 601)
    last = _get(api, page["next"])
    assert (len(last["runs"]), last["next"]) == (101, None)


def _count(api, path: str) -> int:
    with _statements(api) as seen:
        _get(api, path)
    return len(seen)


def test_a_page_of_runs_costs_the_same_queries_whatever_its_runs_hold(api):
    small, large = _job(api), _job(api)
    _seed(api, large, 300, 4)
    few = _count(api, f"/api/v1/jobs/{small}/runs")
    many = _count(api, f"/api/v1/jobs/{large}/runs?limit=300")
    assert few == many, f"1 run: {few} statements, 300 runs with 4 artifacts each: {many}"


def test_a_signatures_runs_cost_the_same_queries_whatever_their_number(api):
    job_id = _job(api)
    _seed(api, job_id, 2, 1, signature="a stack")
    few = _count(api, f"/api/v1/signatures/{'f' * 16}/runs")
    _seed(api, job_id, 200, 3, signature="a stack")
    many = _count(api, f"/api/v1/signatures/{'f' * 16}/runs?limit=200")
    assert few == many, f"2 runs: {few} statements, 200 runs: {many}"


def test_the_job_list_costs_the_same_queries_whatever_its_number_of_jobs(api):
    _job(api)
    one = _count(api, "/api/v1/jobs")
    for _ in range(20):
        assert submit(api, repeats=1).status_code == 201
    twenty_one = _count(api, "/api/v1/jobs")
    assert one == twenty_one, f"1 job: {one} statements, 21 jobs: {twenty_one}"


def test_signature_buckets_cost_the_same_queries_whatever_their_number(api):
    job_id = _job(api)
    _seed(api, job_id, 3, 0, signature="first")
    one = _count(api, "/api/v1/signatures")
    with transaction(api.client.app.state.sessions) as s:
        for i, run in enumerate(s.scalars(select(Run).where(Run.job_id == job_id))):
            for step in (RunState.READY, RunState.LEASED, RunState.HUNG):
                if states.may_move(run.status, step):
                    states.move_run(run, step)
            run.label = "other-hang"
            run.signature, run.signature_key = f"sig {i}", f"{i:016x}"
    buckets = _get(api, "/api/v1/signatures")
    assert len(buckets) == 4
    assert _count(api, "/api/v1/signatures") == one
