"""Turning errors into HTTP answers, in one place.

Every refusal has the same body, ``{"detail": {"message": ..., "field": ...}}``:
the message names the field and the reason and never echoes a large input back.
A database that cannot be reached is a 503 (retry later), never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from reprofarm_db.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, TooLarge
from sqlalchemy.exc import (
    DataError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)
_MAX_ERRORS = 10
_MAX_TEXT = 300


def body(message: str, field: str | None = None, **extra: Any) -> dict[str, object]:
    detail: dict[str, object] = {"message": message[: _MAX_TEXT * 4]}
    if field is not None:
        detail["field"] = field
    detail.update(extra)
    return {"detail": detail}


def _field(loc: Sequence[int | str], kind: str = "") -> str:
    """``body.pools.0`` -> ``pools.0``; a header or query keeps its name; JSON that
    does not parse is the ``body`` (its loc ends with a character offset)."""
    if kind == "json_invalid":
        return "body"
    parts = [str(p) for p in (loc[1:] if len(loc) > 1 else loc)]
    return ".".join(parts)[:100]


def validation_body(errors: Sequence[Any]) -> dict[str, object]:
    """FastAPI's validation errors without their ``input`` (it can be megabytes,
    or NaN, which JSON cannot even carry back)."""
    listed = [
        {
            "field": _field(e.get("loc", ()), str(e.get("type", ""))),
            "message": str(e.get("msg", ""))[:_MAX_TEXT],
            "type": str(e.get("type", "")),
        }
        for e in errors[:_MAX_ERRORS]
    ]
    message = "; ".join(f"{e['field']}: {e['message']}" for e in listed) or "invalid request"
    more = len(errors) - len(listed)
    if more > 0:
        message += f"; and {more} more"
    return body(message, listed[0]["field"] if listed else None, errors=listed)


_STATUSES: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (TooLarge, 413),
    (Invalid, 422),
    (Forbidden, 403),
)


def status_of(exc: DomainError) -> int:
    """The HTTP status a domain error becomes (400 for one of no finer kind): the
    answer of a request it ends, and of one item of a batch it refuses."""
    return next((status for kind, status in _STATUSES if isinstance(exc, kind)), 400)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's and FastAPI's own refusals in the one shape. A body that is
        not JSON (bytes that are not UTF-8) is a 422 naming the body, not a bare 400."""
        detail = exc.detail
        if exc.status_code == 400 and isinstance(detail, str) and "parsing the body" in detail:
            return JSONResponse(body("body: not valid JSON (UTF-8)", "body"), status_code=422)
        content = {"detail": detail} if isinstance(detail, dict) else body(str(detail))
        return JSONResponse(content, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(exc.errors()), status_code=422)

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(body(str(exc), getattr(exc, "field", None)), status_code=status_of(exc))

    @app.exception_handler(IntegrityError)
    async def _race(_request: Request, exc: IntegrityError) -> JSONResponse:
        log.info("a concurrent change won: %s", exc.orig)
        return JSONResponse(
            body("a concurrent request changed the same thing first; retry"), status_code=409
        )

    @app.exception_handler(StaleDataError)
    async def _stale(_request: Request, exc: StaleDataError) -> JSONResponse:
        """A write decided on a read another request made stale (a run's status is the
        version its UPDATE checks, reprofarm_db.states): refused whole, never half done."""
        log.info("a write based on a stale read was refused: %s", exc)
        return JSONResponse(  # 503: agents retry it, as they must (their 4xx are final)
            body("the run changed while this request ran; nothing was stored; retry"),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(DataError)
    async def _out_of_range(_request: Request, exc: DataError) -> JSONResponse:
        log.info("the database refused a value: %s", exc.orig)
        return JSONResponse(body("a value is out of the range the farm stores"), status_code=422)

    for unavailable in (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError):

        @app.exception_handler(unavailable)
        async def _db_down(_request: Request, exc: Exception) -> JSONResponse:
            log.warning("database unavailable: %s", getattr(exc, "orig", exc))
            return JSONResponse(
                body("the database is unavailable; try again"),
                status_code=503,
                headers={"Retry-After": "5"},
            )

    @app.exception_handler(StatementError)
    async def _statement(_request: Request, exc: StatementError) -> JSONResponse:
        if isinstance(exc.orig, OverflowError | ValueError):
            return JSONResponse(body("a value is out of the range the farm stores"), 422)
        log.error("database statement failed: %s", exc)
        return JSONResponse(body("the database failed this request"), status_code=500)
