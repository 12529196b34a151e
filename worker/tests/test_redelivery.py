"""A worker killed mid-analysis (SIGKILL: no warm shutdown, no acknowledgement)
leaves its task in Redis; another worker runs it after the visibility timeout, and
the artifact has one report. Real worker processes, Redis and Postgres."""

from __future__ import annotations

import signal
from pathlib import Path

from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.models import ArtifactAnalysis, Run
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.queues import TASK_ANALYZE_ARTIFACT, TASK_QUEUES
from reprofarm_worker.app import create_celery
from sqlalchemy import select

from tests.celery_farm import leased_run_with_dumps, start_worker, stop, wait_for, worker_env

CORPUS = Path(__file__).resolve().parents[2] / "analyzer" / "tests" / "corpus" / "goroutines"
CONTROL_DUMP = CORPUS / "hangtest-control-deadlock-stall-go1.27-linux.txt"
ANALYSIS_WORKER = ["worker", "--queues", "analysis", "--concurrency", "1"]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_an_analysis_whose_worker_was_killed_is_finished_by_another_once(
    postgres_url, redis_url, tmp_path
):
    upgrade(postgres_url)
    sessions = make_sessionmaker(make_engine(postgres_url))
    run_id, (artifact_id,) = leased_run_with_dumps(sessions, tmp_path, {"goroutines-1.txt": None})
    env = worker_env(
        tmp_path / "data",
        database_url=postgres_url,
        broker_url=redis_url,
        broker_visibility_timeout_s="3",
    )
    settings = ControllerSettings(
        data_dir=tmp_path / "data", database_url=postgres_url, broker_url=redis_url
    )
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_worker(ANALYSIS_WORKER, env, first_log)
    second = None
    try:
        app = create_celery(settings)
        app.send_task(
            TASK_ANALYZE_ARTIFACT, args=[artifact_id], queue=TASK_QUEUES[TASK_ANALYZE_ARTIFACT]
        )
        # The first worker is inside the task: its analysis child blocks on the FIFO.
        wait_for("the first worker's analysis child", lambda: bool(_children(first.pid)), first_log)
        children = _children(first.pid)
        stop(first, signal.SIGKILL)
        # Its child is not left behind: it ends when it sees its parent gone.
        wait_for(
            "the killed worker's analysis child to end",
            lambda: not any(_alive(c) for c in children),
            first_log,
            timeout_s=10,
        )
        fifo = tmp_path / "goroutines-1.txt"
        fifo.unlink()
        fifo.write_bytes(CONTROL_DUMP.read_bytes())  # now it can be read
        second = start_worker(ANALYSIS_WORKER, env, second_log)

        def labelled() -> bool:
            with transaction(sessions) as s:
                return s.get(Run, run_id).label == "control-deadlock"

        wait_for("the second worker to finish the analysis", labelled, second_log)
        with transaction(sessions) as s:
            rows = s.scalars(select(ArtifactAnalysis)).all()
            assert [(r.artifact_id, r.label, r.error) for r in rows] == [
                (artifact_id, "control-deadlock", None)
            ]
        # Celery logs the success after the task's commit: wait for the line, too.
        wait_for(
            "the second worker to log the task's success",
            lambda: "succeeded" in second_log.read_text(),
            second_log,
        )
    finally:
        stop(first, signal.SIGKILL)
        if second is not None:
            stop(second)
