"""Bounds every wire model shares, so that no value reaches the database or a
log that it cannot hold: integers fit a signed 64-bit column, floats are finite,
strings and lists have lengths (a 50 MB pool name was once stored and served).

``Strict`` is the base of every model a client sends: unknown fields and
non-finite numbers (``NaN``, ``Infinity``) are refused with the field's name.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

INT64_MAX = 2**63 - 1

Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A non-negative count that a BIGINT column holds."""

Seconds = Annotated[float, Field(ge=0, le=10**9, allow_inf_nan=False)]
"""A finite, non-negative duration (about 31 years at most)."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
"""Agent names and pool names: printable, short, safe in a path or a log."""

Text = Annotated[str, StringConstraints(max_length=2000)]
"""Free text from a client (reasons, first errors): bounded, never echoed whole."""

ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]

MAX_LIST = 64
"""Most entries a client list may hold (pools, CPU counts, affinities...)."""


class Strict(BaseModel):
    """Base of every request body: unknown fields and NaN/Infinity are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
