"""The export of a million runs from Postgres: rows per second and the api's peak memory.

    uv run python bench/export.py [--runs 1000000] [--chunk-rows 5000,1000]
    uv run python bench/export.py --database-url URL   # an already loaded database

Loads the dashboard benchmark's farm (bench/dashboard_queries.py: runs in every state
over 90 days, 2,000 hardware configurations) into a scratch database, then, for each
format, starts a fresh api process (`reprofarm api`, uvicorn, as deployed), downloads
`GET /api/v1/runs/export` over HTTP and prints: counted rows, bytes, seconds, rows/s,
and the api process's memory: its resident set once warmed up (one small export
served) and its peak (the kernel's VmHWM high-water mark, read from /proc at the end,
so no sample can miss a spike). The peak above the warmed-up level is what one
export costs; with a bounded export it follows the chunk size, not the run count.
A JSON line with every figure ends the output.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from dashboard_queries import Shape, load
from reprofarm_db import tokens
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.farm import free_port, wait_for
from tests.fixtures import scratch_database

BIN = Path(sys.executable).parent


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


@contextlib.contextmanager
def api_process(url: str, chunk_rows: int, data_dir: Path) -> Any:
    """A fresh `reprofarm api` on the loaded database; yields (base URL, pid)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPROFARM_")}
    env |= {
        "REPROFARM_DATA_DIR": str(data_dir),
        "REPROFARM_DATABASE_URL": url,
        "REPROFARM_EXPORT_CHUNK_ROWS": str(chunk_rows),
    }
    process = subprocess.Popen(
        [str(BIN / "reprofarm"), "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
        yield base, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def measure(url: str, token: str, fmt: str, chunk_rows: int) -> dict[str, Any]:
    """One export, timed, into a file whose rows are counted afterwards (a CSV's
    records; a Parquet footer's row count), so a short answer cannot pass for fast."""
    headers = {"Authorization": f"Bearer {token}"}
    with (
        tempfile.TemporaryDirectory() as data_dir,
        api_process(url, chunk_rows, Path(data_dir)) as (base, pid),
    ):
        # Warm up: imports, the pool's connections, pyarrow, one small export served.
        warm = httpx.get(
            f"{base}/api/v1/runs/export",
            params={"format": fmt, "job_id": 2},
            headers=headers,
            timeout=120,
        )
        warm.raise_for_status()
        warm_kb = _status_kb(pid, "VmRSS")
        size = 0
        out = Path(data_dir) / f"runs.{fmt}"
        started = time.perf_counter()
        with (
            httpx.stream(
                "GET",
                f"{base}/api/v1/runs/export",
                params={"format": fmt},
                headers=headers,
                timeout=httpx.Timeout(60, read=600),
            ) as response,
            out.open("wb") as file,
        ):
            response.raise_for_status()
            for piece in response.iter_raw():
                file.write(piece)
                size += len(piece)
        seconds = time.perf_counter() - started
        peak_kb = _status_kb(pid, "VmHWM")
        rows = _rows(out, fmt)
    return {
        "format": fmt,
        "rows": rows,
        "bytes": size,
        "seconds": round(seconds, 2),
        "warm_rss_mb": round(warm_kb / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "export_mb": round((peak_kb - warm_kb) / 1024, 1),
    }


def _rows(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.read_metadata(path).num_rows)
    with path.open(newline="") as file:
        return sum(1 for _ in csv.reader(file)) - 1


def counted_runs(url: str) -> int:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT count(*) FROM runs WHERE status IN ('passed', 'hung', 'failed')"
        ).fetchone()
    assert row is not None
    return int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--hardware", type=int, default=2_000)
    parser.add_argument("--agents", type=int, default=1_000)
    parser.add_argument(
        "--chunk-rows",
        default="5000,1000",
        help="REPROFARM_EXPORT_CHUNK_ROWS values to measure, comma-separated",
    )
    parser.add_argument("--database-url", help="measure this already loaded database")
    args = parser.parse_args()
    shape = Shape(runs=args.runs, hardware=args.hardware, agents=args.agents)
    with contextlib.ExitStack() as stack:
        url = args.database_url
        if url is None:
            url = stack.enter_context(scratch_database("reprofarm_export_bench"))
            upgrade(url)
            started = time.perf_counter()
            load(url, shape)
            print(f"loaded {shape} in {time.perf_counter() - started:.0f} s")
        engine = make_engine(url)
        with transaction(make_sessionmaker(engine)) as s:
            token = tokens.create(s, name="bench", role="viewer")
        engine.dispose()
        rows = counted_runs(url)
        figures = []
        for chunk_rows, fmt in itertools.product(
            (int(c) for c in args.chunk_rows.split(",")), ("csv", "parquet")
        ):
            f = measure(url, token, fmt, chunk_rows)
            f["chunk_rows"] = chunk_rows
            if f["rows"] != rows:
                raise SystemExit(f"{fmt}: {f['rows']} rows exported, {rows} counted runs")
            f["rows_per_s"] = round(rows / f["seconds"])
            figures.append(f)
            print(
                f"{fmt:8} chunks of {chunk_rows:,}: {rows:,} rows, {f['bytes'] / 1e6:.0f} MB "
                f"in {f['seconds']:.1f} s: "
                f"{f['rows_per_s']:,} rows/s; api RSS {f['warm_rss_mb']} MB warm, "
                f"peak {f['peak_rss_mb']} MB (+{f['export_mb']} MB for the export)"
            )
    print(
        json.dumps(
            {
                "shape": vars(shape),
                "load_avg": [round(x, 1) for x in os.getloadavg()],
                "exports": figures,
            }
        )
    )


if __name__ == "__main__":
    main()
