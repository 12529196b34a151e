"""Results waiting for the api, on disk: nothing is lost while the api is
unreachable or the agent restarts.

Layout of ``<work_dir>/spool/``: one ``run-<id>.json`` per finished run,
holding the report and its artifacts (path, kind, upload name, uploaded?).
A file is written atomically and durably (``state.write_atomic``: temp file,
fsync, rename) and deleted only after the api has acknowledged the result.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel, Field
from reprofarm_protocol.jobs import RunReport

from reprofarm_agent.state import remove, write_atomic


class SpooledArtifact(BaseModel):
    path: str
    kind: str
    name: str
    uploaded: bool = False


class SpooledResult(BaseModel):
    run_id: int
    lease_token: str = Field(
        "", repr=False, description="proves the lease when the result is delivered"
    )
    report: RunReport
    artifacts: list[SpooledArtifact]
    run_dir: str | None = None  # deleted once the api has the result


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root / "spool"
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, run_id: int) -> Path:
        return self.root / f"run-{run_id}.json"

    def save(self, item: SpooledResult) -> None:
        write_atomic(self._path(item.run_id), item.model_dump_json(indent=2), private=True)

    def pending(self) -> list[SpooledResult]:
        return [
            SpooledResult.model_validate_json(p.read_text())
            for p in sorted(self.root.glob("run-*.json"))
        ]

    def done(self, item: SpooledResult) -> None:
        """Forget a delivered result, and the run folder with its dumps."""
        if item.run_dir:
            shutil.rmtree(item.run_dir, ignore_errors=True)
        remove(self._path(item.run_id))
