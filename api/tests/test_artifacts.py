"""Artifact uploads: hashing as bytes arrive, the upload's lifecycle and limits."""

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from reprofarm_api.app import create_app
from reprofarm_db import leases
from reprofarm_db.engine import transaction
from reprofarm_db.models import Artifact
from sqlalchemy import func, select

from tests.api_calls import lease, make_build, register, submit

BIG = 32 << 20


def _read_bytes() -> int:
    """Bytes this process read through read(2) and friends (all its threads)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _leased(api, tmp_path):
    agent = register(api)
    submit(api, repeats=1)
    make_build(api, tmp_path / "hangtest.exe")
    return lease(api, agent)


def _meta(data: bytes, kind: str = "core", sha: str | None = None) -> dict[str, str]:
    return {
        "X-Artifact-Kind": kind,
        "X-Artifact-Sha256": sha or hashlib.sha256(data).hexdigest(),
        "X-Artifact-Size": str(len(data)),
    }


def _chunks(data: bytes, size: int = 1 << 20):
    return (data[i : i + size] for i in range(0, len(data), size))


@pytest.mark.parametrize("api", [{"max_artifact_bytes": 64 << 20}], indirect=True)
def test_completing_a_large_upload_reads_nothing_back(api, tmp_path):
    run = _leased(api, tmp_path)
    data = os.urandom(BIG)
    url = f"/api/v1/runs/{run['run_id']}/artifacts/core.gz"
    before, started = _read_bytes(), time.perf_counter()
    r = api.client.put(url, headers={**run["headers"], **_meta(data)}, content=_chunks(data))
    read, took = _read_bytes() - before, time.perf_counter() - started
    assert r.status_code == 200, r.text
    assert r.json()["complete"] is True
    print(f"32 MiB upload: {took:.3f} s, {read} bytes read by the process")
    # Hashing the file again at completion would read all 32 MiB back.
    assert read < BIG // 8, f"the upload read {read} bytes: the file was read again"
    blob = api.settings.artifact_dir / "blobs" / hashlib.sha256(data).hexdigest()
    assert blob.stat().st_size == BIG


@pytest.mark.parametrize("api", [{"max_artifact_bytes": 64 << 20}], indirect=True)
def test_a_large_upload_with_a_wrong_sha256_is_refused_and_kept_nowhere(api, tmp_path):
    run = _leased(api, tmp_path)
    data = os.urandom(BIG)
    url = f"/api/v1/runs/{run['run_id']}/artifacts/core.gz"
    wrong = hashlib.sha256(data + b"!").hexdigest()
    r = api.client.put(
        url, headers={**run["headers"], **_meta(data, sha=wrong)}, content=_chunks(data)
    )
    assert r.status_code == 422
    assert r.json()["detail"]["field"] == "X-Artifact-Sha256"
    assert api.client.get(url, headers=run["headers"]).json()["received"] == 0
    assert list((api.settings.artifact_dir / "blobs").iterdir()) == []
    assert list((api.settings.artifact_dir / "partial").glob("*.gz")) == []


def _put_range(
    client: TestClient, url: str, headers: dict[str, str], data: bytes, start: int, end: int
):
    return client.put(
        url,
        headers={**headers, **_meta(data), "Content-Range": f"bytes {start}-{end - 1}/{len(data)}"},
        content=data[start:end],
    )


def test_a_resumed_upload_continues_the_running_hash_without_reading_back(api, tmp_path):
    run = _leased(api, tmp_path)
    data = os.urandom(900 << 10)
    url = f"/api/v1/runs/{run['run_id']}/artifacts/core.gz"
    store = api.client.app.state.artifacts
    for start, end in ((0, 300 << 10), (300 << 10, 600 << 10), (600 << 10, len(data))):
        r = _put_range(api.client, url, run["headers"], data, start, end)
        assert r.status_code == 200, r.text
    assert r.json()["complete"] is True
    assert store.rehashed_bytes == 0


def test_a_resume_on_another_api_process_hashes_the_kept_bytes_once(api, tmp_path):
    """The running hash lives in the process that kept the bytes; another one
    (or the same after a restart) hashes the kept prefix once, and the sha256
    check still holds."""
    run = _leased(api, tmp_path)
    data = os.urandom(900 << 10)
    url = f"/api/v1/runs/{run['run_id']}/artifacts/core.gz"
    assert _put_range(api.client, url, run["headers"], data, 0, 400 << 10).status_code == 200
    other = create_app(api.settings, relay=False)
    with TestClient(other) as client:
        r = _put_range(client, url, run["headers"], data, 400 << 10, len(data))
        assert r.status_code == 200, r.text
        assert r.json()["complete"] is True
        assert other.state.artifacts.rehashed_bytes == 400 << 10
    blob = api.settings.artifact_dir / "blobs" / hashlib.sha256(data).hexdigest()
    assert blob.read_bytes() == data


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


def _artifact_count(api) -> int:
    with transaction(api.client.app.state.sessions) as s:
        return s.scalar(select(func.count()).select_from(Artifact))


def test_after_the_result_new_uploads_are_refused_and_complete_ones_stay_complete(api, tmp_path):
    run = _leased(api, tmp_path)
    base = f"/api/v1/runs/{run['run_id']}/artifacts"
    dump = b"goroutine 1 [semacquire]:\n" * 100
    put = api.client.put(
        f"{base}/goroutines.txt",
        headers={**run["headers"], **_meta(dump, "goroutines")},
        content=dump,
    )
    assert put.json()["complete"] is True
    half = b"x" * 1000
    part = api.client.put(
        f"{base}/core.gz",
        headers={**run["headers"], **_meta(half), "Content-Range": "bytes 0-499/1000"},
        content=half[:500],
    )
    assert part.json()["received"] == 500
    r = api.client.post(
        f"/api/v1/runs/{run['run_id']}/result", headers=run["headers"], json={"result": HUNG}
    )
    assert r.json()["counted"] is True

    late = b"late evidence"
    r = api.client.put(
        f"{base}/stdout.jsonl", headers={**run["headers"], **_meta(late, "stdout")}, content=late
    )
    assert r.status_code == 409
    assert "has its result" in r.json()["detail"]["message"]
    r = api.client.put(
        f"{base}/core.gz",
        headers={**run["headers"], **_meta(half), "Content-Range": "bytes 500-999/1000"},
        content=half[500:],
    )
    assert r.status_code == 409, "an unfinished upload is not finished after the result either"
    again = api.client.put(
        f"{base}/goroutines.txt",
        headers={**run["headers"], **_meta(dump, "goroutines")},
        content=dump,
    )
    assert again.status_code == 200, "a delivery retried after its answer was lost"
    assert again.json()["complete"] is True
    assert _artifact_count(api) == 2


def test_a_lost_run_takes_its_late_evidence_until_its_late_result(api, tmp_path):
    run = _leased(api, tmp_path)
    with transaction(api.client.app.state.sessions) as s:
        assert leases.sweep(s, now=datetime.now(UTC) + timedelta(hours=1), max_attempts=3) == [
            run["run_id"]
        ]
    base = f"/api/v1/runs/{run['run_id']}/artifacts"
    dump = b"goroutine 1 [semacquire]:\n" * 100
    r = api.client.put(
        f"{base}/goroutines.txt",
        headers={**run["headers"], **_meta(dump, "goroutines")},
        content=dump,
    )
    assert r.status_code == 200, r.text
    r = api.client.post(
        f"/api/v1/runs/{run['run_id']}/result", headers=run["headers"], json={"result": HUNG}
    )
    assert r.json() == {"run_id": run["run_id"], "status": "lost", "counted": False}
    out = b"{}\n"
    r = api.client.put(
        f"{base}/stdout.jsonl", headers={**run["headers"], **_meta(out, "stdout")}, content=out
    )
    assert r.status_code == 409
    assert "lost" in r.json()["detail"]["message"]


@pytest.mark.parametrize(
    "api", [{"max_artifacts_per_run": 2, "max_run_artifact_bytes": 3000}], indirect=True
)
def test_a_run_takes_at_most_its_artifacts_and_bytes(api, tmp_path):
    run = _leased(api, tmp_path)
    base = f"/api/v1/runs/{run['run_id']}/artifacts"
    first, second = b"a" * 1000, b"b" * 1500
    for name, data in (("one", first), ("two", second)):
        r = api.client.put(
            f"{base}/{name}", headers={**run["headers"], **_meta(data)}, content=data
        )
        assert r.status_code == 200, r.text
    third = b"c"
    r = api.client.put(f"{base}/three", headers={**run["headers"], **_meta(third)}, content=third)
    assert r.status_code == 409
    assert "REPROFARM_MAX_ARTIFACTS_PER_RUN=2" in r.json()["detail"]["message"]
    assert _artifact_count(api) == 2


@pytest.mark.parametrize("api", [{"max_run_artifact_bytes": 3000}], indirect=True)
def test_a_run_over_its_byte_limit_is_413_naming_the_limit(api, tmp_path):
    run = _leased(api, tmp_path)
    base = f"/api/v1/runs/{run['run_id']}/artifacts"
    first = b"a" * 2000
    # announced, not finished: its announced size counts
    r = api.client.put(
        f"{base}/one",
        headers={**run["headers"], **_meta(first), "Content-Range": "bytes 0-9/2000"},
        content=first[:10],
    )
    assert r.status_code == 200, r.text
    second = b"b" * 1001
    r = api.client.put(f"{base}/two", headers={**run["headers"], **_meta(second)}, content=second)
    assert r.status_code == 413
    assert r.json()["detail"]["field"] == "X-Artifact-Size"
    assert "REPROFARM_MAX_RUN_ARTIFACT_BYTES=3000" in r.json()["detail"]["message"]
    assert _artifact_count(api) == 1
    assert not (api.settings.artifact_dir / "partial" / f"{run['run_id']}-two").exists()


def test_an_artifact_over_its_size_limit_is_413_naming_the_setting(api, tmp_path):
    run = _leased(api, tmp_path)
    url = f"/api/v1/runs/{run['run_id']}/artifacts/core.gz"
    meta = {**_meta(b"x"), "X-Artifact-Size": str((1 << 20) + 1)}
    r = api.client.put(url, headers={**run["headers"], **meta}, content=b"x")
    assert r.status_code == 413
    assert r.json()["detail"]["field"] == "X-Artifact-Size"
    assert "REPROFARM_MAX_ARTIFACT_BYTES=1048576" in r.json()["detail"]["message"]
    assert _artifact_count(api) == 0
