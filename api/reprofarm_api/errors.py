"""Turning errors into HTTP answers, in one place."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from reprofarm_db.errors import Conflict, DomainError, Invalid, NotFound
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)


def _body(message: str, field: str | None = None) -> dict[str, object]:
    detail: dict[str, object] = {"message": message}
    if field is not None:
        detail["field"] = field
    return {"detail": detail}


def install(app: FastAPI) -> None:
    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(_body(str(exc)), status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(_body(str(exc)), status_code=409)

    @app.exception_handler(Invalid)
    async def _invalid(_request: Request, exc: Invalid) -> JSONResponse:
        return JSONResponse(_body(str(exc), exc.field), status_code=422)

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(_body(str(exc)), status_code=400)

    @app.exception_handler(OperationalError)
    async def _db_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.orig)
        return JSONResponse(_body("the database is unavailable; try again"), status_code=503)
