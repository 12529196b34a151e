"""Artifact records; the bytes live in the api's store, named by sha256."""

from __future__ import annotations

from reprofarm_protocol.queues import TASK_ANALYZE_ARTIFACT
from sqlalchemy import select
from sqlalchemy.orm import Session

from reprofarm_db import leases, outbox
from reprofarm_db.analyses import ANALYSED_KINDS
from reprofarm_db.errors import Conflict, NotFound
from reprofarm_db.models import Artifact, utcnow


def get_or_raise(session: Session, *, artifact_id: int) -> Artifact:
    artifact = session.get(Artifact, artifact_id)
    if artifact is None:
        raise NotFound(f"artifact {artifact_id} does not exist")
    return artifact


def for_run(session: Session, *, run_id: int) -> list[Artifact]:
    return list(session.scalars(select(Artifact).where(Artifact.run_id == run_id)))


def open_upload(
    session: Session,
    *,
    agent_id: int,
    run_id: int,
    lease_token: str | None,
    name: str,
    kind: str,
    sha256: str,
    size: int,
    path: str,
) -> tuple[Artifact, bool]:
    """The artifact row for an upload, once the caller proved the run's lease:
    created on the first request, reused by a resumed one (same name, hash and
    size), refused if those differ. Returns (row, created)."""
    leases.prove_lease(session, agent_id=agent_id, run_id=run_id, lease_token=lease_token)
    found = session.scalar(select(Artifact).where(Artifact.run_id == run_id, Artifact.name == name))
    if found is None:
        found = Artifact(run_id=run_id, name=name, kind=kind, sha256=sha256, bytes=size, path=path)
        session.add(found)
        session.flush()
        return found, True
    if (found.sha256, found.bytes) != (sha256, size):
        raise Conflict(f"artifact {name!r} of run {run_id} was announced with another hash or size")
    return found, False


def upload_state(
    session: Session, *, agent_id: int, run_id: int, lease_token: str | None, name: str
) -> Artifact | None:
    """How far an upload got, for the lease that is resuming it (and nobody else)."""
    leases.prove_lease(session, agent_id=agent_id, run_id=run_id, lease_token=lease_token)
    return session.scalar(select(Artifact).where(Artifact.run_id == run_id, Artifact.name == name))


def forget_unstarted(session: Session, *, artifact_id: int) -> None:
    """Delete an upload's row if none of its bytes were kept (a refused first try)."""
    row = session.get(Artifact, artifact_id)
    if row is not None and not row.complete and row.received == 0:
        session.delete(row)


def record_progress(
    session: Session, *, artifact_id: int, received: int, blob: str | None
) -> Artifact:
    """After a chunk: how much the api holds, and the blob once it is complete. A
    complete dump is queued for analysis in the same transaction (outbox)."""
    row = get_or_raise(session, artifact_id=artifact_id)
    row.received = received
    if blob is not None:
        row.complete, row.path, row.created_at = True, blob, utcnow()
        if row.kind in ANALYSED_KINDS:
            outbox.add(session, task=TASK_ANALYZE_ARTIFACT, args=[row.id])
    return row
