"""`reprofarm triage`, through the installed command against a real api process (uvicorn
on a scratch Postgres): the JSON contract of issue 17 (the analysis plus `bucket`), a
paste read from stdin, keep, and the one behaviour for text that is no dump."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from reprofarm_api.app import create_app
from reprofarm_db import tokens
from reprofarm_db.engine import transaction
from reprofarm_db.settings import ControllerSettings

from api.tests.conftest import Api
from api.tests.test_triage import CONTROL, annotated_paste, farm_with_one_labelled_hang
from tests.e2e.farm import Farm, RedisServer

CONTRACT = {"kind", "label", "signature", "evidence", "confidence", "bucket"}


@pytest.fixture
def served(tmp_path, postgres_url) -> Iterator[Farm]:
    """The api alone, as `reprofarm api` serves it (no worker: triage needs none)."""
    redis = RedisServer(tmp_path)
    redis.start()
    farm = Farm(root=tmp_path, database_url=postgres_url, redis=redis)
    farm.prepare()
    farm.start_api()
    yield farm
    farm.stop_all()
    redis.stop()


def triage(farm: Farm, *args: str, stdin: bytes | None = None, token: str | None = None):
    return reprofarm(farm, "triage", *args, stdin=stdin, token=token)


def reprofarm(farm: Farm, *args: str, stdin: bytes | None = None, token: str | None = None):
    return subprocess.run(
        [str(Path(sys.executable).parent / "reprofarm"), *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "REPROFARM_API": farm.url,
            "REPROFARM_TOKEN": token or farm.admin,
        },
    )


def test_triage_json_prints_the_analysis_and_the_farms_bucket(served, tmp_path) -> None:
    settings = ControllerSettings(data_dir=tmp_path / "seed", database_url=served.database_url)
    with TestClient(create_app(settings, relay=False)) as client:
        with transaction(client.app.state.sessions) as s:
            admin = tokens.create(s, name="seed", role="admin")
        hung_id = farm_with_one_labelled_hang(Api(client, settings, admin), tmp_path)
    paste = tmp_path / "ci-log.txt"
    paste.write_bytes(annotated_paste())
    done = triage(served, str(paste), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) >= CONTRACT
    assert (report["label"], report["confidence"]) == ("control-deadlock", "partial")
    bucket = report["bucket"]
    assert bucket["signature"] == report["signature"]
    assert bucket["hung_runs"] == 1
    assert bucket["first_run"]["id"] == hung_id
    (hw,) = bucket["by_hardware"]
    assert {"hardware", "runs", "hangs", "ci95_low", "ci95_high"} <= set(hw)
    assert (hw["runs"], hw["hangs"]) == (3, 1)
    readable = triage(served, str(paste))
    assert readable.returncode == 0, readable.stderr
    out = readable.stdout.decode()
    assert "control-deadlock (partial confidence)" in out
    assert "1/3" in out


def test_a_paste_on_stdin_is_kept_when_asked_and_then_seen_in_ci(served) -> None:
    text = CONTROL.read_bytes()
    first = triage(served, "-", "--json", "--keep", "--source", "ci://job/1", stdin=text)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["bucket"] is None
    assert report["kept_id"] is not None
    again = triage(served, "-", "--json", stdin=text)
    assert json.loads(again.stdout)["seen_in_ci"]["dumps"] == 1
    kept_again = triage(served, "-", "--keep", stdin=text)
    assert kept_again.returncode == 0, kept_again.stderr
    assert f"triaged dump {report['kept_id']} (already kept" in kept_again.stdout.decode()


def test_signatures_seen_in_ci_lists_the_kept_dumps_of_a_signature(served) -> None:
    kept = json.loads(
        triage(
            served, "-", "--json", "--keep", "--source", "ci://job/9", stdin=CONTROL.read_bytes()
        ).stdout
    )
    key = kept["seen_in_ci"]["key"]
    listed = reprofarm(served, "signatures", "seen-in-ci", key, "--json")
    assert listed.returncode == 0, listed.stderr
    ((dump,),) = [json.loads(listed.stdout)]
    assert (dump["id"], dump["source"], dump["label"]) == (
        kept["kept_id"],
        "ci://job/9",
        "control-deadlock",
    )
    readable = reprofarm(served, "signatures", "seen-in-ci", key).stdout.decode()
    assert f"#{kept['kept_id']}" in readable
    assert "ci://job/9" in readable
    none = reprofarm(served, "signatures", "seen-in-ci", "0" * 16)
    assert (none.returncode, none.stdout) == (
        0,
        f"no kept triaged dump has signature {'0' * 16}\n".encode(),
    )
    bad = reprofarm(served, "signatures", "seen-in-ci", "not-a-key")
    assert (bad.returncode, bad.stdout) == (2, b"")
    assert b"HTTP 422" in bad.stderr


def test_text_that_is_no_dump_is_exit_2_with_nothing_on_stdout(served) -> None:
    done = triage(served, "-", "--json", stdin=b"Close -> CancelIoEx -> ReadFile, stuck\n")
    assert (done.returncode, done.stdout) == (2, b"")
    assert b"HTTP 422" in done.stderr
    assert b"goroutine header" in done.stderr


def test_a_missing_file_is_exit_2_naming_it(served, tmp_path) -> None:
    done = triage(served, str(tmp_path / "absent.txt"))
    assert (done.returncode, done.stdout) == (2, b"")
    assert b"absent.txt" in done.stderr
