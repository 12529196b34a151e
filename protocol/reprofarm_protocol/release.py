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

import json
import re
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

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
    url: str = Field(
        max_length=160,
        description="path of the download on this api, always `/agent/wheels/{filename}`: "
        "a relative path, so the agent fetches it (with its token) from the controller it "
        "is configured with and nowhere else",
    )

    @field_validator("url")
    @classmethod
    def _the_controllers_own_wheel_route(cls, url: str, info: ValidationInfo) -> str:
        """A release could otherwise send the agent, bearer token attached, to any
        host it names; only the wheel route of the same controller is allowed."""
        filename = info.data.get("filename")
        if filename is None:  # the filename was refused already; that error says why
            return url
        if url != wheel_url(filename):
            raise ValueError(
                f"must be the controller's own wheel route {wheel_url(filename)!r} "
                f"(a relative path), got {url[:100]!r}"
            )
        return url


Signature = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{86}==$")]
"""An Ed25519 signature (64 bytes), base64."""
PublicKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]
"""An Ed25519 public key (32 raw bytes), base64: how agent.env and install.ps1 hold it."""
SIGNATURE_CONTEXT = b"reprofarm agent release v1\n"
"""Prefixed to what is signed, so a release signature can never pass for another message."""


class AgentRelease(BaseModel):
    """What ``GET /api/v1/agent/release`` answers: the manifest, signed by the
    controller. ``signature`` is optional here only so that an agent can read an
    unsigned manifest and refuse it with that reason."""

    model_config = ConfigDict(frozen=True)

    version: Version = Field(
        description="the agent's version; built from source it carries a local label "
        "derived from the sources (`0.1.0+src1a2b3c4d5e6f`), so any change is a new release"
    )
    files: list[ReleaseFile] = Field(
        description="the wheels to install together, the agent's last", min_length=1, max_length=16
    )
    requirements: str = Field(
        min_length=1,
        max_length=1 << 20,
        description="every third-party dependency of the agent, pinned with its sha256s "
        "(pip's requirements format, `--hash` lines; from the controller's uv.lock): "
        "installed with `--require-hashes`, then the wheels without dependencies",
    )
    signature: Signature | None = Field(
        None,
        description="Ed25519 signature by the controller's release key of `signed_bytes()` "
        "(version, files, requirements); agents refuse a release without a valid one",
    )

    def signed_bytes(self) -> bytes:
        """What the signature covers: the context, then version, files and
        requirements as compact JSON with sorted keys. Every value is ASCII by
        its pattern or an int, so both sides produce the same bytes."""
        body = self.model_dump(mode="json", include={"version", "files", "requirements"})
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return SIGNATURE_CONTEXT + text.encode("ascii")


WHEEL_ROUTE = "/agent/wheels/"
"""The controller's route that serves a release's wheels (``WHEEL_ROUTE + filename``)."""


def wheel_url(filename: str) -> str:
    return f"{WHEEL_ROUTE}{filename}"
