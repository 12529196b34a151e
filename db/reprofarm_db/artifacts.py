"""Artifact records; the bytes live in the api's store, named by sha256."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

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
    session: Session, *, run_id: int, name: str, kind: str, sha256: str, size: int, path: str
) -> Artifact:
    """The artifact row for an upload: created on the first request, reused by
    a resumed one (same name, hash and size), refused if those differ."""
    found = session.scalar(select(Artifact).where(Artifact.run_id == run_id, Artifact.name == name))
    if found is None:
        found = Artifact(run_id=run_id, name=name, kind=kind, sha256=sha256, bytes=size, path=path)
        session.add(found)
        session.flush()
        return found
    if (found.sha256, found.bytes) != (sha256, size):
        raise Conflict(f"artifact {name!r} of run {run_id} was announced with another hash or size")
    return found


def record_progress(
    session: Session, *, artifact_id: int, received: int, blob: str | None
) -> Artifact:
    """After a chunk: how much the api holds, and the blob once it is complete."""
    row = get_or_raise(session, artifact_id=artifact_id)
    row.received = received
    if blob is not None:
        row.complete, row.path, row.created_at = True, blob, utcnow()
    return row
