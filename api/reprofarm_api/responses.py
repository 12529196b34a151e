"""What each operation can answer besides success, for the OpenAPI document:
every refusal has the same body (``reprofarm_api.errors``), and each router
lists the statuses its operations can return, so clients and schemathesis see
the truth."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class ErrorDetail(BaseModel):
    message: str = Field(description="names the field or object, and the reason")
    field: str | None = Field(None, description="the field at fault, where there is one")
    errors: list[FieldError] | None = Field(None, description="422: every field at fault")
    received: int | None = Field(None, description="409 on upload: the byte to resume from")


class ErrorBody(BaseModel):
    detail: ErrorDetail


_MEANING = {
    401: "no token, or an invalid or revoked one",
    403: "the token's role may not do this, or the lease is not proven",
    404: "no such object",
    409: "the current state forbids it (another agent's run, a finished job, a taken name)",
    413: "the body (or the announced artifact) is over the limit",
    422: "a field is invalid; `detail.field` names it",
    503: "the database is unavailable: retry later",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": _MEANING[code]} for code in codes}


def json_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """For routes whose success is not JSON (text, files): their refusals still are,
    and a ``model`` would be documented in the route's own media type."""
    schema = {"$ref": "#/components/schemas/ErrorBody"}
    return {
        code: {"description": _MEANING[code], "content": {"application/json": {"schema": schema}}}
        for code in codes
    }


AUTHENTICATED = errors(401, 403, 413, 422, 503)
"""Every operation behind a token can answer these."""
