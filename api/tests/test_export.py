"""GET /api/v1/runs/export on the real app and Postgres: what it hands out is the
counted runs of the database, row for row, under the dashboard's filters; bad
filters are a 422 naming the field; each chunk is its own short read."""

import csv
import io
import itertools
import math
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest
from reprofarm_db.engine import transaction
from reprofarm_db.export import NAMES
from reprofarm_db.models import Agent, HardwareConfig, Job, Run
from reprofarm_protocol.jobs import COUNTED_RUN_STATES
from sqlalchemy import event, select

from tests.factories import register_agent

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
# (status, label, signature, cpus, control_chance): counted runs and the rest
RUNS = [
    ("hung", "cancelioex-sync-io", "cancelioex-sync-io:ReadFile", 1, 0.5),
    ("hung", None, None, 2, None),  # not analysed yet: pending
    ("hung", "close-waits-sync-io", "close-waits-sync-io:Close", None, 0.0),
    ("passed", "no-hang", "no-hang", 1, None),
    ("failed", "no-hang", "no-hang", 2, 1e-3),
    ("ready", None, None, 1, None),
    ("error", None, None, 1, None),
    ("lost", None, None, 2, None),
    ("cancelled", None, None, 2, None),
]


@pytest.fixture
def farm(api):
    """Two jobs a day apart (the first stored before control_chance was an axis: its
    runs' chance is NULL and the job's single number applies), two agents on
    different hardware, every run state."""
    with transaction(api.client.app.state.sessions) as s:
        arm, _ = register_agent(s, "arm-1", pools=["windows-arm64"], arch="arm64")
        vm, _ = register_agent(s, "x64-vm", cpus=8, arch="amd64", hypervisor="hyperv")
        old = Job(spec={"control_chance": 1e-4}, status="done", created_at=T0)
        new = Job(spec={}, status="done", created_at=T0 + timedelta(days=1))
        s.add_all([old, new])
        s.flush()
        for job, agent, scenario, go in (
            (old, arm, "control-deadlock", "1.25.5"),
            (new, vm, "pipe-close-race", "1.27.3"),
            (new, arm, "pipe-close-race", "1.27.3"),
        ):
            for i, (status, label, signature, cpus, chance) in enumerate(RUNS):
                s.add(
                    Run(
                        job_id=job.id,
                        status=status,
                        scenario=scenario,
                        go_version=go,
                        cpus=cpus,
                        affinity="spread" if i % 2 else "compact",
                        control_chance=chance,
                        pool="windows-arm64" if agent is arm else None,
                        agent_id=None if status == "ready" else agent.id,
                        hardware_config_id=None if status == "ready" else agent.hardware_config_id,
                        iterations=1000 + i,
                        duration_s=10.5 + i,
                        finished_at=None if status == "ready" else T0 + timedelta(minutes=i),
                        label=label,
                        signature=signature,
                        selector={},
                    )
                )
        ids = {"old": old.id, "new": new.id}
    return {**ids, "viewer": api.headers(api.token("viewer"))}


def expected(api, **only):
    """The counted runs read through the ORM, one dict per run, as the export
    must show them (``only``: column values they must have)."""
    rows = []
    with transaction(api.client.app.state.sessions) as s:
        for run in s.scalars(select(Run).order_by(Run.id)):
            if run.status not in COUNTED_RUN_STATES:
                continue
            config = s.get(HardwareConfig, run.hardware_config_id)
            job = s.get(Job, run.job_id)
            pending = "pending" if run.status == "hung" else None
            row = {
                "run_id": run.id,
                "job_id": run.job_id,
                "status": run.status,
                "hung": int(run.status == "hung"),
                "label": run.label or pending,
                "signature": run.signature or pending,
                "scenario": run.scenario,
                "go_version": run.go_version,
                "cpus": run.cpus,
                "affinity": run.affinity,
                "control_chance": (
                    run.control_chance
                    if run.control_chance is not None
                    else job.spec.get("control_chance")
                ),
                "hardware": config.label,
                "fingerprint": config.fingerprint,
                "arch": config.arch,
                "hypervisor": config.hypervisor,
                "cpu_model": config.cpu_model,
                "logical_cpus": config.logical_cpus,
                "physical_cores": config.physical_cores,
                "os": config.os,
                "os_version": config.os_version,
                "agent": s.get(Agent, run.agent_id).name,
                "pool": run.pool,
                "iterations": run.iterations,
                "duration_s": run.duration_s,
                "finished_at": run.finished_at,
            }
            if all(row[k] == v for k, v in only.items()):
                rows.append(row)
    return rows


def from_csv(text):
    """CSV back into typed values: empty is missing, as the export documents."""
    ints = {"run_id", "job_id", "hung", "cpus", "logical_cpus", "physical_cores", "iterations"}
    floats = {"control_chance", "duration_s"}

    def value(name, text):
        if text == "":
            return None
        if name in ints:
            return int(text)
        if name in floats:
            return float(text)
        if name == "finished_at":
            return datetime.fromisoformat(text)
        return text

    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames) == NAMES
    return [{k: value(k, v) for k, v in record.items()} for record in reader]


def get(api, farm, **params):
    return api.client.get("/api/v1/runs/export", params=params, headers=farm["viewer"])


def test_csv_has_one_row_per_counted_run_equal_to_the_database(api, farm):
    r = get(api, farm, format="csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="runs.csv"' in r.headers["content-disposition"]
    rows = from_csv(r.text)
    want = expected(api)
    assert len(want) == 15, "three jobs' worth of five counted runs"
    assert rows == want


def test_parquet_reads_back_equal_to_the_database_with_its_types(api, farm):
    r = get(api, farm, format="parquet", job_id=farm["new"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    assert f'filename="runs-job-{farm["new"]}.parquet"' in r.headers["content-disposition"]
    table = pq.read_table(io.BytesIO(r.content))
    assert tuple(table.column_names) == NAMES
    assert str(table.schema.field("cpus").type) == "int64"
    assert str(table.schema.field("finished_at").type) == "timestamp[us, tz=UTC]"
    assert table.to_pylist() == expected(api, job_id=farm["new"])


def test_a_legacy_run_takes_its_jobs_single_chance(api, farm):
    rows = from_csv(get(api, farm, job_id=farm["old"]).text)
    chances = [r["control_chance"] for r in rows]
    assert chances == [0.5, 1e-4, 0.0, 1e-4, 1e-3]


@pytest.mark.parametrize(
    ("params", "only"),
    [
        ({"scenario": "control-deadlock"}, {"scenario": "control-deadlock"}),
        ({"go_version": "1.27.3"}, {"go_version": "1.27.3"}),
        ({"since": "2026-11-02T00:00:00Z"}, {"scenario": "pipe-close-race"}),
        ({"until": "2026-11-02T00:00:00Z"}, {"scenario": "control-deadlock"}),
        ({"go_version": "1.99.0"}, {"go_version": "1.99.0"}),
    ],
)
def test_filters_keep_the_runs_the_dashboard_would_count(api, farm, params, only):
    rows = from_csv(get(api, farm, **params).text)
    assert rows == expected(api, **only)


def test_the_hardware_filter_keeps_one_configuration(api, farm):
    vm = next(r for r in expected(api) if r["hypervisor"] == "hyperv")
    rows = from_csv(get(api, farm, hardware=vm["fingerprint"]).text)
    assert rows == expected(api, fingerprint=vm["fingerprint"])


def test_a_label_makes_hung_the_k_of_the_stats_for_that_label(api, farm):
    label = "cancelioex-sync-io"
    rows = from_csv(get(api, farm, label=label).text)
    assert len(rows) == 15, "other hangs stay in as runs where this bug did not show"
    assert [r["run_id"] for r in rows if r["hung"]] == [
        r["run_id"] for r in expected(api) if r["label"] == label
    ]
    stats = api.client.get(
        "/api/v1/stats", params={"group_by": "hardware", "label": label}, headers=farm["viewer"]
    ).json()["rows"]
    by_hardware = {s["hardware"]: (s["hangs"], s["runs"]) for s in stats}
    exported = {}
    for r in rows:
        k, n = exported.get(r["fingerprint"], (0, 0))
        exported[r["fingerprint"]] = (k + r["hung"], n + 1)
    assert exported == by_hardware


def test_no_matching_run_is_a_header_or_an_empty_parquet_file(api, farm):
    assert get(api, farm, job_id=999_999).text == ",".join(NAMES) + "\r\n"
    table = pq.read_table(io.BytesIO(get(api, farm, job_id=999_999, format="parquet").content))
    assert (table.num_rows, tuple(table.column_names)) == (0, NAMES)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"format": "xlsx"}, "format"),
        ({"scenario": "no-such-scenario"}, "scenario"),
        ({"since": "last tuesday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"job_id": 0}, "job_id"),
        ({"hardware": "not-hex"}, "hardware"),
        ({"label": "x" * 41}, "label"),
    ],
)
def test_a_bad_filter_is_a_422_naming_it(api, farm, params, field):
    r = get(api, farm, **params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"] == field


def test_an_agent_token_may_not_export(api, farm):
    r = api.client.get("/api/v1/runs/export", headers=api.headers(api.token("agent")))
    assert r.status_code == 403


@pytest.mark.parametrize("api", [{"export_chunk_rows": 4}], indirect=True)
def test_each_chunk_is_one_short_read_and_one_row_group(api, farm):
    """The memory bound, without a clock: with chunks of 4 runs, the export reads the
    runs 4 at a time (each read in a transaction and connection of its own, given
    back before the next) and writes one Parquet row group per read. 15 runs: reads
    of 4, 4, 4 and 3, the short one being the last."""
    engine = api.client.app.state.sessions.kw["bind"]
    events = []

    def on_execute(_conn, _cursor, statement, _params, _context, _many):
        if "FROM runs" in statement and "LIMIT" in statement:
            events.append("read")

    def on_checkin(_dbapi_conn, _record):
        events.append("checkin")

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine.pool, "checkin", on_checkin)
    try:
        r = get(api, farm, format="parquet")
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine.pool, "checkin", on_checkin)
    metadata = pq.read_metadata(io.BytesIO(r.content))
    groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert groups == [4, 4, 4, 3]
    reads = [i for i, e in enumerate(events) if e == "read"]
    assert len(reads) == math.ceil(15 / 4)
    for a, b in itertools.pairwise(reads):
        assert "checkin" in events[a:b], f"the connection was held from read {a} to read {b}"
    assert pq.read_table(io.BytesIO(r.content)).to_pylist() == expected(api)
