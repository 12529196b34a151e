"""Where the CLI finds the controller: ``--api`` / ``REPROFARM_API``, else the
local ``reprofarm up`` instance, which writes its URL and an admin token into
its data directory (as Jupyter does), so the local flow needs no token step."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from reprofarm_db.settings import ControllerSettings

DEFAULT_PORT = 8600


@dataclass(frozen=True)
class Instance:
    url: str
    token: str


def instance_file(data_dir: Path) -> Path:
    return data_dir / "instance.json"


def token_file(data_dir: Path) -> Path:
    return data_dir / "admin-token"


def write_instance(data_dir: Path, url: str, token: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = token_file(data_dir)
    path.write_text(token)
    path.chmod(0o600)
    instance_file(data_dir).write_text(json.dumps({"url": url, "pid": os.getpid()}))


def resolve(api: str | None, token: str | None, data_dir: Path | None) -> Instance:
    """Explicit options win, then REPROFARM_API / REPROFARM_TOKEN, then the
    files of the local instance under the data directory."""
    folder = data_dir or ControllerSettings().data_dir
    url = api or os.environ.get("REPROFARM_API", "")
    if not url and instance_file(folder).exists():
        url = json.loads(instance_file(folder).read_text())["url"]
    url = url or f"http://127.0.0.1:{DEFAULT_PORT}"
    secret = token or os.environ.get("REPROFARM_TOKEN", "")
    if not secret and token_file(folder).exists():
        secret = token_file(folder).read_text().strip()
    return Instance(url=url.rstrip("/"), token=secret)
