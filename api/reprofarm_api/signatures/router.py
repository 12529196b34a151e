"""The analyzer's verdicts: an artifact's analysis, its debugger script, and the
signature buckets that group hung runs by what their dumps show."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse
from reprofarm_analyzer.debugger_script import cdb_script
from reprofarm_db import analyses, triage
from reprofarm_db import artifacts as artifacts_
from reprofarm_db.errors import Conflict, NotFound
from reprofarm_protocol.analysis import Analysis
from reprofarm_protocol.limits import INT64_MAX

from reprofarm_api.deps import ArtifactId, SessionDep, Viewer
from reprofarm_api.responses import AUTHENTICATED, errors, json_errors
from reprofarm_api.runs import service as runs
from reprofarm_api.runs.schemas import RunRead
from reprofarm_api.signatures.schemas import AnalysisRead, BucketRead
from reprofarm_api.triage.schemas import KeptDumpRead

router = APIRouter(prefix="/api/v1", tags=["analysis"], responses=AUTHENTICATED)

SignatureKey = Annotated[
    str, Path(pattern=r"^[0-9a-f]{16}$", description="a bucket's key (from GET /signatures)")
]


@router.get(
    "/artifacts/{artifact_id}/analysis",
    response_model=AnalysisRead,
    summary="What the analyzer made of one dump",
    responses=errors(404),
)
def artifact_analysis(artifact_id: ArtifactId, session: SessionDep, _token: Viewer) -> AnalysisRead:
    """404 while the dump is not analysed yet (or is not a dump)."""
    artifacts_.get_or_raise(session, artifact_id=artifact_id)
    row = analyses.for_artifact(session, artifact_id=artifact_id)
    if row is None:
        raise NotFound(f"artifact {artifact_id} has no analysis (yet)")
    return AnalysisRead(
        artifact_id=row.artifact_id,
        run_id=row.run_id,
        kind=row.kind,
        label=row.label,
        confidence=row.confidence,
        signature=row.signature,
        rules_version=row.rules_version,
        analyzed_at=row.analyzed_at,
        error=row.error,
        report=Analysis.model_validate(row.report) if row.report else None,
    )


@router.get(
    "/artifacts/{artifact_id}/debugger-script",
    response_class=PlainTextResponse,
    summary="A cdb/WinDbg script for a minidump: every stack, then the threads that matter",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "cdb"},
        **json_errors(401, 403, 404, 409, 413, 422, 503),
    },
)
def debugger_script(artifact_id: ArtifactId, session: SessionDep, _token: Viewer) -> str:
    """Run it with `cdb -z <dump> -cf <script>`."""
    artifact = artifacts_.get_or_raise(session, artifact_id=artifact_id)
    row = analyses.for_artifact(session, artifact_id=artifact_id)
    if row is None or row.report is None:
        raise NotFound(f"artifact {artifact_id} has no readable analysis (yet)")
    if row.kind != "minidump":
        raise Conflict(f"artifact {artifact_id} is a {row.kind}, not a minidump")
    return cdb_script(
        Analysis.model_validate(row.report), dump_name=artifact.name.removesuffix(".gz")
    )


@router.get("/signatures", response_model=list[BucketRead], summary="Signature buckets")
def signatures(
    session: SessionDep,
    _token: Viewer,
    label: Annotated[str | None, Query(max_length=40, description="only this label")] = None,
) -> list[dict[str, Any]]:
    """Hung runs grouped by signature, most frequent first: first and last seen,
    counts per hardware, Go version and CPU count, recent example runs, and how many
    triaged dumps from outside the farm were kept with it (seen in CI)."""
    found = analyses.buckets(session, label=label)
    seen = triage.kept_counts(session, keys=[b.key for b in found])
    return [{**b.as_dict(), "seen_in_ci": seen.get(b.key, 0)} for b in found]


@router.get(
    "/signatures/{key}/runs",
    response_model=list[RunRead],
    summary="The runs of one signature bucket, newest first",
    responses=errors(404),
)
def signature_runs(
    key: SignatureKey,
    session: SessionDep,
    _token: Viewer,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
) -> list[RunRead]:
    found = analyses.runs_of_signature(session, key=key, limit=limit, offset=offset)
    if not found and offset == 0:
        raise NotFound(f"no run has signature {key}")
    return runs.read(session, found)


@router.get(
    "/signatures/{key}/seen-in-ci",
    response_model=list[KeptDumpRead],
    summary="The triaged dumps kept with one signature (seen in CI), newest first",
)
def signature_seen_in_ci(
    key: SignatureKey,
    session: SessionDep,
    _token: Viewer,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
) -> list[KeptDumpRead]:
    """Who sent each, when, from where, and what it was labelled; an empty list when
    none was kept with this signature (a signature is not a stored object: no 404)."""
    found = triage.kept_of_signature(session, key=key, limit=limit, offset=offset)
    return [KeptDumpRead.model_validate(row, from_attributes=True) for row in found]
