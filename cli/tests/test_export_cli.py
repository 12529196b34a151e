"""`reprofarm export` against a real api process (on the embedded SQLite database):
the documented contract, and that a failed export leaves no file behind."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from reprofarm_db import tokens
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.models import Job, Run
from sqlalchemy import select

from tests.e2e.farm import free_port, wait_for
from tests.factories import register_agent

BIN = Path(sys.executable).parent
CONTRACT = ("run_id", "status", "label", "cpus", "affinity", "go_version", "hardware")
STATES = ("passed", "hung", "failed", "hung", "ready", "error", "lost", "cancelled", "passed")


@dataclass
class Controller:
    url: str
    admin: str
    job_id: int
    counted: list[int]  # the job's passed, hung and failed runs
    pid: int  # the api process's


@contextmanager
def running_controller(data: Path, repeats: int, env: dict[str, str]) -> Iterator[Controller]:
    """A real api process (``env``: its REPROFARM_* settings) on a database with two
    jobs of ``repeats`` runs in every state each."""
    url = f"sqlite:///{data / 'reprofarm.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    with transaction(make_sessionmaker(engine)) as s:
        admin = tokens.create(s, name="admin", role="admin")
        agent, _ = register_agent(s, "lab-1")
        jobs = [Job(spec={}, status="done"), Job(spec={}, status="done")]
        s.add_all(jobs)
        s.flush()
        for job in jobs:
            for i, status in enumerate(STATES * repeats):
                s.add(
                    Run(
                        job_id=job.id,
                        status=status,
                        scenario="pipe-close-race",
                        go_version="1.27.3",
                        cpus=1 + i % 2,
                        affinity="compact",
                        agent_id=agent.id,
                        hardware_config_id=agent.hardware_config_id,
                        label="no-hang" if status in ("passed", "failed") else None,
                        selector={},
                    )
                )
        s.flush()
        job_id = jobs[1].id
        counted = list(
            s.scalars(
                select(Run.id)
                .where(Run.job_id == job_id, Run.status.in_(("passed", "hung", "failed")))
                .order_by(Run.id)
            )
        )
    engine.dispose()
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REPROFARM_")}
    with (data / "api.log").open("ab") as log:
        process = subprocess.Popen(
            [str(BIN / "reprofarm"), "api", "--port", str(port)],
            env={**clean, "REPROFARM_DATA_DIR": str(data), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/health", timeout=1).is_success
        except httpx.TransportError:
            return False

    try:
        wait_for("the api", healthy, timeout=60, every=0.2)
        yield Controller(base, admin, job_id, counted, process.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a test may have killed it
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def controller(tmp_path_factory) -> Iterator[Controller]:
    with running_controller(tmp_path_factory.mktemp("data"), repeats=1, env={}) as c:
        yield c


def export(c: Controller, *args: str, api: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "reprofarm"), "export", *args, "--api", api or c.url, "--token", c.admin],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_csv_has_one_row_per_counted_run_of_the_job_with_the_contract_columns(controller, tmp_path):
    out = tmp_path / "runs.csv"
    done = export(controller, "--job", str(controller.job_id), "--format", "csv", "--out", str(out))
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(CONTRACT) <= set(rows[0]), f"missing: {set(CONTRACT) - set(rows[0])}"
    assert [int(r["run_id"]) for r in rows] == controller.counted
    assert {r["status"] for r in rows} == {"passed", "hung", "failed"}
    assert all(r["hardware"].startswith("cpu of lab-1 (arm64") for r in rows)
    assert f"export: {len(controller.counted)} rows" in done.stderr, done.stderr
    assert f"{len(controller.counted)} runs written to {out}" in done.stderr
    assert not out.with_name("runs.csv.partial").exists()


def test_parquet_has_one_row_per_counted_run_of_the_job(controller, tmp_path):
    out = tmp_path / "runs.parquet"
    done = export(
        controller, "--job", str(controller.job_id), "--format", "parquet", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out, columns=list(CONTRACT))
    assert table.column("run_id").to_pylist() == controller.counted
    assert table.column("label").to_pylist() == [
        "no-hang",
        "pending",
        "no-hang",
        "pending",
        "no-hang",
    ]


def test_a_refused_filter_exits_2_naming_it_and_keeps_the_old_file(controller, tmp_path):
    out = tmp_path / "runs.csv"
    out.write_text("yesterday's export")
    done = export(controller, "--since", "last tuesday", "--out", str(out))
    assert done.returncode == 2
    assert "error: HTTP 422" in done.stderr
    assert "since" in done.stderr
    assert out.read_text() == "yesterday's export"
    assert list(tmp_path.iterdir()) == [out]


def test_an_unreachable_api_exits_2_and_writes_nothing(controller, tmp_path):
    out = tmp_path / "runs.csv"
    done = export(controller, "--out", str(out), api=f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 2
    assert "error: api:" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_format_exits_2_before_asking(controller, tmp_path):
    done = export(controller, "--format", "xlsx", "--out", str(tmp_path / "runs.xlsx"))
    assert done.returncode == 2
    assert "format: 'xlsx' is not one of csv, parquet" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_download_cut_short_exits_2_and_leaves_nothing(tmp_path):
    """One run per chunk (REPROFARM_EXPORT_CHUNK_ROWS=1) keeps the api streaming for a
    while; it is killed once the first bytes are on disk, so the answer never ends."""
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "out" / "runs.csv"
    out.parent.mkdir()
    partial = out.with_name("runs.csv.partial")
    env = {"REPROFARM_EXPORT_CHUNK_ROWS": "1"}
    with running_controller(data, repeats=300, env=env) as c:
        command = [str(BIN / "reprofarm"), "export", "--out", str(out)]
        with subprocess.Popen(
            [*command, "--api", c.url, "--token", c.admin],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as exporting:
            wait_for(
                "the first bytes", lambda: partial.exists() and partial.stat().st_size, 60, 0.01
            )
            os.killpg(c.pid, signal.SIGKILL)
            _, stderr = exporting.communicate(timeout=60)
    assert exporting.returncode == 2, stderr
    assert "broke off" in stderr
    assert list(out.parent.iterdir()) == []
