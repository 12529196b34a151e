"""``POST /api/v1/triage``: "is my CI hang this bug?" for a dump from anywhere.

The body is the dump itself (pasted text or a file's bytes: a goroutine dump, a CI log,
an issue page's HTML, ``go test -json`` output, a minidump). It is analysed here, in the
request (bounded by ``max_triage_bytes``, in the analyzer's bounded child process: a 10 MB
dump takes about 0.3 s of CPU), and
answered with the farm's evidence for its signature. Cores are refused: reading one needs
gdb and the worker's limits. The dump is stored only with ``keep=true``, which needs a
submitter token (it writes); reading a verdict needs a viewer's. The same bytes are kept
once (by sha256: the reply says ``already_kept`` with the first copy's id); an admin may
delete a kept dump (``DELETE /triage/kept/{id}``).
"""

from __future__ import annotations

import zlib
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from reprofarm_analyzer.analysis import detect_kind
from reprofarm_analyzer.bounded import analyze_bytes_bounded
from reprofarm_analyzer.errors import AnalyzerError
from reprofarm_db import triage
from reprofarm_db.analyses import signature_key
from reprofarm_db.errors import Forbidden, Invalid, TooLarge
from reprofarm_db.tokens import Role, allows
from reprofarm_protocol.analysis import Analysis, DumpKind

from reprofarm_api.deps import ID_MAX, Admin, SessionDep, SettingsDep, Viewer
from reprofarm_api.responses import AUTHENTICATED, errors
from reprofarm_api.triage.schemas import FarmBucketRead, SeenInCiRead, TriageRead

router = APIRouter(prefix="/api/v1", tags=["analysis"], responses=AUTHENTICATED)

TRIAGE_TIMEOUT_S = 30.0
"""A pasted dump's analysis takes well under a second (10 MB: 0.3 s of CPU); this bounds
what crafted text could cost."""

DumpBody = Annotated[
    bytes,
    Body(
        media_type="application/octet-stream",
        description="the dump as text or bytes (at most max_triage_bytes); an empty body is"
        " refused like any text that is no dump",
    ),
]


def _head(data: bytes) -> bytes:
    """The first bytes the dump's kind is told by, a gzip'd body's expanded (at most 4 KB
    of output: a bomb expands no further): a compressed core is refused like a plain one,
    before it would be expanded and read with gdb."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[:65536], 4096)
    except zlib.error:
        return data  # not really gzip: the analysis says what it is


def _analysed(data: DumpBody = b"", *, settings: SettingsDep) -> tuple[Analysis, bytes]:
    """The dump's analysis, made before the request takes a database slot (a dependency
    declared ahead of the session): reading 10 MB takes a fraction of a second of CPU, and
    a slot held meanwhile would keep other requests from the database."""
    if len(data) > settings.max_triage_bytes:
        raise TooLarge(
            "body",
            f"{len(data):,} bytes, over the limit of {settings.max_triage_bytes:,}"
            " (REPROFARM_MAX_TRIAGE_BYTES)",
        )
    if detect_kind(_head(data)) is DumpKind.CORE:
        raise Invalid("body", "a core dump: upload it with its run (reading it needs gdb)")
    # In a child process within the analysis limits (docs/analyzer.md, "Bounded analysis"),
    # and at most TRIAGE_TIMEOUT_S: a viewer's text must not hold an api thread for long.
    limits = settings.analysis_limits()
    limits = limits.model_copy(update={"timeout_s": min(limits.timeout_s, TRIAGE_TIMEOUT_S)})
    scratch = settings.data_dir / "triage-scratch"
    try:
        analysis = analyze_bytes_bounded(data, scratch=scratch, limits=limits)
    except AnalyzerError as exc:
        raise Invalid("body", str(exc)) from exc
    return analysis, data


Analysed = Annotated[tuple[Analysis, bytes], Depends(_analysed)]
KeptDumpId = Annotated[
    int, Path(ge=1, le=ID_MAX, description="a kept triaged dump's id (kept_id of POST /triage)")
]


@router.post(
    "/triage",
    response_model=TriageRead,
    summary="Analyse a dump from outside the farm and show the farm's evidence for it",
)
def triage_dump(
    token: Viewer,
    analysed: Analysed,
    session: SessionDep,
    keep: Annotated[
        bool, Query(description="store the dump (with who sent it and when): submitters")
    ] = False,
    source: Annotated[
        str | None, Query(max_length=500, description="where it comes from (a CI job's URL)")
    ] = None,
) -> TriageRead:
    """422 when the body is no dump (the message names what was looked for), 413 past
    the size limit, 403 for ``keep=true`` without a submitter token."""
    if keep and not allows(token.role, Role.SUBMITTER):
        raise Forbidden("keep=true stores the dump: it needs a submitter token")
    analysis, data = analysed
    bucket = triage.farm_bucket(session, signature=analysis.signature)
    kept, new = None, False
    if keep:
        kept, new = triage.keep(
            session, analysis=analysis, data=data, sent_by=token.name, source=source
        )
    seen = triage.seen_in_ci(session, key=signature_key(analysis.signature[:500]))
    # SessionDep commits when this returns, before the answer is sent (deps.get_session).
    return TriageRead(
        **analysis.model_dump(),
        bucket=FarmBucketRead.model_validate(triage.as_dict(bucket)) if bucket else None,
        seen_in_ci=SeenInCiRead.model_validate(triage.as_dict(seen)),
        kept_id=kept.id if kept else None,
        already_kept=kept is not None and not new,
    )


@router.delete(
    "/triage/kept/{dump_id}",
    status_code=204,
    summary="Forget a kept triaged dump (sent by mistake, or holding what it should not)",
    responses={204: {"description": "deleted"}, **errors(404)},
)
def delete_kept(dump_id: KeptDumpId, session: SessionDep, _token: Admin) -> Response:
    """Admins only: the dump, its report and its place in "seen in CI" go; 404 if there
    is no such kept dump."""
    triage.delete_kept(session, dump_id=dump_id)
    return Response(status_code=204)
