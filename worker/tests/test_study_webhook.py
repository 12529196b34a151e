"""A study that decides sends its webhook: a real worker process on Redis and Postgres
takes the step, and the receiver (a real HTTP server) gets one signed POST, sent again
after it answered 503. The signature checks as docs/api.md says to check it."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from reprofarm_db import builds, claims, leases, studies
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.models import Agent
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.queues import TASK_QUEUES, TASK_STUDY_STEP
from reprofarm_protocol.runs import RunStatus
from reprofarm_protocol.studies import VerifyCreate
from reprofarm_worker import webhooks
from reprofarm_worker.app import create_celery

from db.tests.test_leases import result
from tests.celery_farm import start_worker, stop, wait_for, worker_env
from tests.factories import fake_build, register_agent

SECRET = "webhook secret of the test"


class Receiver:
    """Answers the queued statuses in turn (then 200), keeping what it was sent."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/study"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([503])
    yield r
    r.close()


def _verified(headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check: HMAC-SHA256 of "<timestamp>.<body>" with the shared secret."""
    signed = headers["X-Reprofarm-Timestamp"].encode() + b"." + body
    want = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, headers["X-Reprofarm-Signature"])


def test_a_decided_study_posts_its_signed_result_and_retries_a_busy_receiver(
    postgres_url, redis_url, tmp_path, receiver
):
    upgrade(postgres_url)
    sessions = make_sessionmaker(make_engine(postgres_url))
    with transaction(sessions) as s:
        agent, _ = register_agent(s, "solo")
        fake_build(s, target=agent.target)
        job, _ = studies.create(
            s,
            spec=VerifyCreate(
                scenario="control-deadlock",
                baseline={"control_chance": 1e-3},
                candidate={"control_chance": 1e-3, "workers": 3},
                webhook_url=receiver.url,
            ),
            idempotency_key=None,
            submitted_by=None,
            online_since=datetime(2000, 1, 1, tzinfo=UTC),
            max_runs=1000,
            webhook_secret_set=True,
            webhook_hosts=["127.0.0.1"],  # the receiver is local: an admin allows it
        )
        builds.mark_ready_if_built(s, job=job)
        job_id = job.id
    # The candidate hangs: the study has its answer (not-fixed) at its next step.
    from reprofarm_db import analyses
    from reprofarm_protocol.analysis import Label

    candidate_hung = False
    while not candidate_hung:
        now = datetime.now(UTC)
        with transaction(sessions) as s:
            leased = claims.lease_for(s, agent_id=agent.id, now=now, lease_s=60, avoid_grace_s=0)
            leases.record_result(
                s,
                agent=s.get(Agent, agent.id),
                run_id=leased.run_id,
                lease_token=leased.lease_token,
                report=result(RunStatus.HUNG),
                now=now,
            )
            run = analyses.label_run(
                s, run_id=leased.run_id, label=Label.CONTROL_DEADLOCK, signature="stack"
            )
            candidate_hung = run.arm == "candidate"
    env = worker_env(
        tmp_path / "data",
        database_url=postgres_url,
        broker_url=redis_url,
        webhook_secret=SECRET,
        webhook_hosts='["127.0.0.1"]',
    )
    settings = ControllerSettings(
        data_dir=tmp_path / "data", database_url=postgres_url, broker_url=redis_url
    )
    log = tmp_path / "worker.log"
    worker = start_worker(["worker", "--queues", "controller", "--concurrency", "1"], env, log)
    try:
        create_celery(settings).send_task(
            TASK_STUDY_STEP, args=[job_id], queue=TASK_QUEUES[TASK_STUDY_STEP]
        )
        wait_for("two deliveries (503, then 200)", lambda: len(receiver.received) >= 2, log)
    finally:
        stop(worker)
    for headers, body in receiver.received:
        assert _verified(headers, body)
        assert headers["X-Reprofarm-Event"] == "study.decided"
        assert headers["X-Reprofarm-Delivery"] == str(job_id)
        sent = json.loads(body)
        assert sent["study"]["verdict"] == "not-fixed"
        assert sent["study"]["job_id"] == job_id
    assert len(receiver.received) == 2  # a 200 ends it
    # A receiver with another secret would refuse it: the signature covers the body.
    headers, body = receiver.received[0]
    assert not _verified(headers, body.replace(b"not-fixed", b"fixed"))


LOCAL = {"body": b"{}", "secret": b"k", "delivery": 1, "allowed_hosts": ["127.0.0.1"]}
"""The receivers here are local: an admin lists the host (REPROFARM_WEBHOOK_HOSTS)."""


def test_a_receiver_that_refuses_is_not_asked_again(receiver):
    receiver.statuses[:] = [410]
    with httpx.Client() as client:
        status = webhooks.deliver(client, url=receiver.url, **LOCAL)
    assert status == 410
    receiver.statuses[:] = [503]
    with httpx.Client() as client, pytest.raises(webhooks.WebhookRetry, match="answered 503"):
        webhooks.deliver(client, url=receiver.url, **LOCAL)
    with httpx.Client() as client, pytest.raises(webhooks.WebhookRetry, match="unreachable"):
        webhooks.deliver(client, url="http://127.0.0.1:9/nobody", **LOCAL)
