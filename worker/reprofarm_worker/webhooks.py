"""The webhook a study sends when it decides: one signed POST of its result.

The body is the study as ``GET /api/v1/studies/{id}`` shows it, under
``{"event": "study.decided", "study": ...}``. Headers: ``X-Reprofarm-Event``,
``X-Reprofarm-Delivery`` (the study's id: a receiver that saw it already may ignore a
repeat), ``X-Reprofarm-Timestamp`` (Unix seconds) and ``X-Reprofarm-Signature``:
``sha256=`` and the hex HMAC-SHA256, keyed with ``REPROFARM_WEBHOOK_SECRET``, of the
timestamp, a dot, and the body's bytes. Signing the timestamp lets a receiver refuse
an old delivery replayed (docs/api.md shows the check)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
from reprofarm_db.models import Job
from sqlalchemy.orm import Session


class WebhookRetry(Exception):  # noqa: N818 - reads as what the task does with it
    """The receiver could not take it now (5xx, 429, or unreachable): send again later."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def payload(session: Session, *, job_id: int) -> tuple[str, bytes] | None:
    """(url, body) of a decided study's webhook, or None (no webhook, not decided)."""
    job = session.get(Job, job_id)
    if job is None or job.study is None or job.decided_at is None:
        return None
    url = job.spec.get("webhook_url")
    if not url:
        return None
    body = json.dumps({"event": "study.decided", "study": job.study}, sort_keys=True)
    return str(url), body.encode()


def deliver(client: httpx.Client, *, url: str, body: bytes, secret: bytes, delivery: int) -> int:
    """POST once. Returns the receiver's status; raises WebhookRetry when sending again
    may help (a 4xx other than 429 will not: it is the receiver's final word)."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Reprofarm-Event": "study.decided",
        "X-Reprofarm-Delivery": str(delivery),
        "X-Reprofarm-Timestamp": timestamp,
        "X-Reprofarm-Signature": sign(secret, timestamp, body),
    }
    try:
        response = client.post(url, content=body, headers=headers, timeout=10.0)
    except httpx.TransportError as exc:
        raise WebhookRetry(f"{url} unreachable: {exc}") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise WebhookRetry(f"{url} answered {response.status_code}")
    return response.status_code
