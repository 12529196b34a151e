"""Artifact records; the bytes live in the api's store, named by sha256.

An artifact's life: announced (a row, ``received`` 0) by the run's own lease
while the run can still take evidence (``accepts_uploads``), filled by one or
more requests, complete once its bytes have the announced hash. A run takes at
most ``RunLimits`` artifacts and bytes. An upload nobody finished is removed
after a while (``abandoned``, ``remove_abandoned``: the worker's beat task).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from reprofarm_protocol.jobs import RunState
from reprofarm_protocol.queues import TASK_ANALYZE_ARTIFACT
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from reprofarm_db import leases, outbox
from reprofarm_db.analyses import ANALYSED_KINDS
from reprofarm_db.engine import forget_cached
from reprofarm_db.errors import Conflict, NotFound, TooLarge
from reprofarm_db.models import Artifact, Base, Run, utcnow

_artifacts = Base.metadata.tables["artifacts"]


@dataclass(frozen=True)
class RunLimits:
    """What one run may upload (``REPROFARM_MAX_ARTIFACTS_PER_RUN``,
    ``REPROFARM_MAX_RUN_ARTIFACT_BYTES``): announced sizes count, finished or not."""

    artifacts: int
    bytes: int


def accepts_uploads(run: Run) -> bool:
    """Evidence is taken while the lease is open, and for a lost run until its
    late result arrives (the agent uploads before it posts a result, and a lost
    run's late evidence is kept, not counted). Once a run has its result, a new
    upload would re-label a finished run: refused."""
    if run.status == RunState.LEASED:
        return True
    return run.status == RunState.LOST and run.late_result is None


def get_or_raise(session: Session, *, artifact_id: int) -> Artifact:
    artifact = session.get(Artifact, artifact_id)
    if artifact is None:
        raise NotFound(f"artifact {artifact_id} does not exist")
    return artifact


def for_run(session: Session, *, run_id: int) -> list[Artifact]:
    return list(
        session.scalars(select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id))
    )


def for_runs(session: Session, *, run_ids: Sequence[int]) -> dict[int, list[Artifact]]:
    """The artifacts of a page of runs in one query (not one per run), by run id;
    every id is a key, with an empty list when the run has none."""
    found: dict[int, list[Artifact]] = {run_id: [] for run_id in run_ids}
    if found:
        for a in session.scalars(
            select(Artifact).where(Artifact.run_id.in_(list(found))).order_by(Artifact.id)
        ):
            found[a.run_id].append(a)
    return found


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
    limits: RunLimits,
) -> tuple[Artifact, bool]:
    """The artifact row for an upload, once the caller proved the run's lease:
    created on the first request, reused by a resumed one (same name, hash and
    size), refused if those differ. Returns (row, created).

    Announcing again an artifact that is complete is answered as complete at
    any time (an agent retrying a delivery whose answer it lost); anything else
    needs a run that still takes evidence (Conflict) and, for a new artifact,
    room under ``limits`` (Conflict for the count, TooLarge for the bytes). The
    run is locked, so its result and concurrent announcements see each other."""
    run = leases.prove_lease(
        session, agent_id=agent_id, run_id=run_id, lease_token=lease_token, lock=True
    )
    found = session.scalar(select(Artifact).where(Artifact.run_id == run_id, Artifact.name == name))
    if found is not None and (found.sha256, found.bytes) != (sha256, size):
        raise Conflict(f"artifact {name!r} of run {run_id} was announced with another hash or size")
    if found is not None and found.complete:
        return found, False
    if not accepts_uploads(run):
        raise Conflict(
            f"run {run_id} is {run.status} and has its result: artifacts are accepted only "
            "until the run's result (a lost run's: until its late result)"
        )
    if found is not None:
        return found, False
    count, total = session.execute(
        select(func.count(), func.coalesce(func.sum(Artifact.bytes), 0)).where(
            Artifact.run_id == run_id
        )
    ).one()
    if count >= limits.artifacts:
        raise Conflict(
            f"run {run_id} already has {count} artifacts, the limit "
            f"(REPROFARM_MAX_ARTIFACTS_PER_RUN={limits.artifacts})"
        )
    if total + size > limits.bytes:
        raise TooLarge(
            "X-Artifact-Size",
            f"{size} bytes more would bring run {run_id}'s artifacts to {total + size} bytes, "
            f"over the limit (REPROFARM_MAX_RUN_ARTIFACT_BYTES={limits.bytes})",
        )
    found = Artifact(run_id=run_id, name=name, kind=kind, sha256=sha256, bytes=size, path=path)
    session.add(found)
    session.flush()
    return found, True


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


class Progress(NamedTuple):
    """An upload as a chunk left it."""

    id: int
    name: str
    kind: str
    received: int
    bytes: int
    complete: bool


_PROGRESS_COLUMNS = [_artifacts.c[name] for name in Progress._fields]
_RECEIVED = (
    update(_artifacts)
    .where(_artifacts.c.id == bindparam("artifact"))
    .values(received=bindparam("got", type_=_artifacts.c.received.type))
    .returning(*_PROGRESS_COLUMNS)
)
_COMPLETED = _RECEIVED.values(
    complete=True,
    path=bindparam("blob", type_=_artifacts.c.path.type),
    created_at=bindparam("at", type_=_artifacts.c.created_at.type),
)


def record_progress(
    session: Session, *, artifact_id: int, received: int, blob: str | None
) -> Progress:
    """After a chunk: how much the api holds, and the blob once it is complete; one
    ``UPDATE ... RETURNING`` (an upload's completion is on the agents' path). A
    complete dump is queued for analysis in the same transaction (outbox)."""
    session.flush()  # the statement below does not autoflush the caller's pending objects
    values: dict[str, object] = {"artifact": artifact_id, "got": received}
    if blob is not None:
        values |= {"blob": blob, "at": utcnow()}
    statement = _RECEIVED if blob is None else _COMPLETED
    done = session.connection().execute(statement, values).one_or_none()
    if done is None:
        raise NotFound(f"artifact {artifact_id} does not exist")
    forget_cached(session, Artifact, artifact_id)
    row = Progress(*done)
    if blob is not None and row.kind in ANALYSED_KINDS:
        outbox.add(session, task=TASK_ANALYZE_ARTIFACT, args=[row.id])
    return row


def abandoned(session: Session, *, started_before: datetime) -> list[tuple[int, str]]:
    """Unfinished uploads announced before ``started_before``: (id, partial
    file path). The caller checks each file's last write before removing it."""
    rows = session.execute(
        select(Artifact.id, Artifact.path)
        .where(Artifact.complete.is_(False), Artifact.created_at < started_before)
        .order_by(Artifact.id)
    )
    return [(int(i), str(p)) for i, p in rows]


def remove_abandoned(
    session: Session, *, artifact_ids: Sequence[int], started_before: datetime
) -> list[str]:
    """Delete these unfinished uploads' rows (a row completed meanwhile stays);
    returns the partial files the caller now deletes."""
    if not artifact_ids:
        return []
    removed = session.execute(
        delete(Artifact)
        .where(
            Artifact.id.in_(artifact_ids),
            Artifact.complete.is_(False),
            Artifact.created_at < started_before,
        )
        .returning(Artifact.path)
    )
    return [str(p) for p in removed.scalars()]
