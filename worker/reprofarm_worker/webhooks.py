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
from collections.abc import Collection

import httpx
from reprofarm_db.models import Job
from reprofarm_protocol import webhook_targets
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


def deliver(
    client: httpx.Client,
    *,
    url: str,
    body: bytes,
    secret: bytes,
    delivery: int,
    allowed_hosts: Collection[str] = (),
    resolve: webhook_targets.Resolve = webhook_targets.resolve_all,
) -> int:
    """POST once, to an address checked just before (reprofarm_protocol.webhook_targets:
    a host that resolves to a private address is refused, ForbiddenTarget, unless an
    admin listed it). Returns the receiver's status; raises WebhookRetry when sending
    again may help (a 4xx other than 429 will not: it is the receiver's final word)."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    target = webhook_targets.address_to_send(
        parsed.host, port, allowed=allowed_hosts, resolve=resolve
    )
    extensions: dict[str, str] = {}
    if target.address is not None:
        # Connect to the address that was checked, not to a second lookup's answer; the
        # request and TLS still name the host (its certificate is checked against it).
        address = f"[{target.address}]" if ":" in target.address else target.address
        url = str(parsed.copy_with(host=address.strip("[]")))
        extensions["sni_hostname"] = target.host
    timestamp = str(int(time.time()))
    headers = {
        "Host": parsed.netloc.decode("ascii"),
        "Content-Type": "application/json",
        "X-Reprofarm-Event": "study.decided",
        "X-Reprofarm-Delivery": str(delivery),
        "X-Reprofarm-Timestamp": timestamp,
        "X-Reprofarm-Signature": sign(secret, timestamp, body),
    }
    try:
        response = client.post(
            url, content=body, headers=headers, timeout=10.0, extensions=extensions
        )
    except httpx.TransportError as exc:
        raise WebhookRetry(f"{url} unreachable: {exc}") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise WebhookRetry(f"{url} answered {response.status_code}")
    return response.status_code
