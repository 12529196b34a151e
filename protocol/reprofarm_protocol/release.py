"""The agent release a controller serves: what a lab machine installs, and what a
running agent compares its own version with to update itself.

A release is the wheels a lab machine needs: ``reprofarm-agent`` and the
packages of this repository it depends on (``reprofarm-protocol``,
``reprofarm-analyzer``), each with its sha256 and size. The install script and
the self-updater download them from ``/agent/wheels/{filename}`` and refuse a
file whose bytes do not match. The api and the agent both validate file names
with ``WHEEL_FILENAME``, so nothing but pure-Python reprofarm wheels can ever be
asked for or served.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

AGENT_PACKAGE = "reprofarm_agent"
"""The distribution every release has (a wheel's file-name form); its version is the release's."""

VERSION_PATTERN = r"^[0-9][0-9A-Za-z.+!_]{0,59}$"
"""A PEP 440 version as it appears in a wheel's file name (``-`` is never part of it)."""

WHEEL_FILENAME = re.compile(
    r"^(reprofarm_[a-z]{1,30})-([0-9][0-9A-Za-z.+!_]{0,59})-py3-none-any\.whl$", re.ASCII
)
"""The only file names ``/agent/wheels/`` serves: pure-Python wheels of this
repository's packages. No separators, no ``..``: a name that matches is safe to
join to a folder."""

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Version = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]


class ReleaseFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    filename: str = Field(
        pattern=WHEEL_FILENAME.pattern, description="download it from `url` (same api)"
    )
    sha256: Sha256 = Field(description="of the file's bytes: check it before installing")
    bytes: int = Field(ge=1, description="the file's size")
    url: str = Field(description="path of the download on this api: `/agent/wheels/{filename}`")


class AgentRelease(BaseModel):
    """What ``GET /api/v1/agent/release`` answers."""

    model_config = ConfigDict(frozen=True)

    version: Version = Field(
        description="the agent's version; built from source it carries a local label "
        "derived from the sources (`0.1.0+src1a2b3c4d5e6f`), so any change is a new release"
    )
    files: list[ReleaseFile] = Field(
        description="the wheels to install together, the agent's last", min_length=1, max_length=16
    )


def wheel_url(filename: str) -> str:
    return f"/agent/wheels/{filename}"
