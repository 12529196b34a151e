"""The embedded broker (kombu's filesystem transport) keeps every file it
writes under the data directory, never in the directory a process was
started from (it used to leave ``control/`` there, and it was committed)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reprofarm_db.migrate import upgrade
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.queues import TASK_SWEEP_LEASES


def _start(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "reprofarm_cli", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_worker_and_beat_on_the_filesystem_broker_write_nothing_in_their_cwd(tmp_path):
    cwd, data = tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    data.mkdir()
    upgrade(ControllerSettings(data_dir=data, database_url="").db_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPROFARM_")}
    env.update(
        REPROFARM_DATA_DIR=str(data),
        REPROFARM_SWEEP_INTERVAL_S="0.5",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    worker_log = tmp_path / "worker.log"
    worker = _start(["worker", "--concurrency", "1"], cwd, env, worker_log)
    beat = _start(["beat"], cwd, env, tmp_path / "beat.log")
    try:
        # A sweep sent by beat through the broker and run by the worker: both
        # sides of the transport (exchange tables, queues) have been used.
        deadline = time.monotonic() + 60
        while TASK_SWEEP_LEASES not in _succeeded(worker_log):
            assert time.monotonic() < deadline, worker_log.read_text()[-3000:]
            assert worker.poll() is None, worker_log.read_text()[-3000:]
            time.sleep(0.3)
    finally:
        _stop(beat)
        _stop(worker)
    assert sorted(p.name for p in cwd.iterdir()) == []
    assert {p.name for p in (data / "broker-control").iterdir()} >= {"controller.exchange"}


def _succeeded(log: Path) -> str:
    text = log.read_text(errors="replace")
    return "\n".join(line for line in text.splitlines() if "succeeded" in line)
