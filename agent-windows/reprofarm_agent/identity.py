"""The machine's secret: created at the agent's first start, kept in its work
folder, sent with every registration. The api binds the agent's name to it, so
another machine (even one holding an enrollment token) cannot register under
this name and take over its runs. Deleting the file gives the machine a new
identity; an admin must then release the old name."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import BaseModel, Field


class MachineIdentity(BaseModel):
    machine_secret: str = Field(min_length=32, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")


def load_or_create(work_dir: Path) -> MachineIdentity:
    """The identity in ``work_dir/identity.json``, created (readable by the owner
    only) if missing. A damaged file is an error, never silently replaced: a
    new secret would lock the agent out of its own name."""
    path = work_dir / "identity.json"
    if path.exists():
        return MachineIdentity.model_validate_json(path.read_text())
    work_dir.mkdir(parents=True, exist_ok=True)
    identity = MachineIdentity(machine_secret=secrets.token_urlsafe(48))
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(identity.model_dump_json())
    tmp.replace(path)
    return identity
