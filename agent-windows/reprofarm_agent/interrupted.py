"""Runs an agent was killed in: remembered while they run, reported as ``error``
when the agent starts again.

An agent can die at any point of a run (killed, crashed, the machine rebooted,
the supervisor gave up on it). Its lease then expires and the controller retries
the run elsewhere, but the run's folder still holds evidence (goroutine dumps,
process dumps, hangtest's own events) and the controller still expects a word
about the attempt. So the agent keeps a marker per run it holds a lease for:

``<work_dir>/inflight/run-<id>.json`` (``RunMarker``): the run id, job, attempt
and the lease's token (without which the api takes no result), written when the
lease is taken; once hangtest is started, also its pid and the OS's identity of
that process (its start time), so a restarted agent kills only the hangtest it
started, never a process that reused the pid. Written atomically and durably
(``state.write_atomic``), readable by the owner only, never logged.

The marker is deleted only after the run's result is in the spool. At start,
before leasing, the agent turns every marker into a spooled ``error`` result
(``interrupted_result``), then deletes the marker; the spool delivers it like
any result, then deletes the run folder. A crash between the spooling and the
deletion leaves a marker whose run is already spooled: it is deleted and nothing
is reported twice (and a repeat of the same result is a no-op for the api).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError
from reprofarm_protocol.errors import ProtocolError
from reprofarm_protocol.hangtest_events import parse_event
from reprofarm_protocol.jobs import LeasedRun
from reprofarm_protocol.runs import Artifact, ArtifactKind, RunResult, RunStatus

from reprofarm_agent.artifacts import describe_artifact
from reprofarm_agent.platform import KillOutcome
from reprofarm_agent.runner import Observed
from reprofarm_agent.state import remove, write_atomic

log = logging.getLogger(__name__)


class RunMarker(BaseModel):
    """A run this agent holds a lease for and has not spooled a result of."""

    run_id: int
    job_id: int
    attempt: int
    lease_token: str = Field(repr=False, description="proves the lease: never logged")
    leased_at: datetime
    pid: int | None = Field(None, description="hangtest's, once started")
    process_identity: str | None = Field(
        None, description="Platform.process_identity of that pid at spawn"
    )
    requested_cpu_set: list[int] = Field(default_factory=list)
    gomaxprocs: int = 0


class RunMarkers:
    """The ``inflight/`` folder of the agent's state folder."""

    def __init__(self, work_dir: Path) -> None:
        self.root = work_dir / "inflight"

    def _path(self, run_id: int) -> Path:
        return self.root / f"run-{run_id}.json"

    def begin(self, leased: LeasedRun, *, now: datetime) -> RunMarker:
        """Remember a lease just taken, before anything else is done for its run."""
        marker = RunMarker(
            run_id=leased.run_id,
            job_id=leased.job_id,
            attempt=leased.attempt,
            lease_token=leased.lease_token,
            leased_at=now,
        )
        self.save(marker)
        return marker

    def save(self, marker: RunMarker) -> None:
        write_atomic(self._path(marker.run_id), marker.model_dump_json(indent=2), private=True)

    def get(self, run_id: int) -> RunMarker | None:
        path = self._path(run_id)
        if not path.exists():
            return None
        return RunMarker.model_validate_json(path.read_text())

    def run_ids(self) -> set[int]:
        """Every run with a marker, readable or not: their folders are kept."""
        return {int(p.stem.removeprefix("run-")) for p in self.root.glob("run-*.json")}

    def pending(self) -> list[RunMarker]:
        """Every readable marker. A damaged one (the disk, a person's edit) is
        logged and left, with its run's folder, for a person to look at: without
        its lease token nothing can be reported."""
        markers = []
        for path in sorted(self.root.glob("run-*.json")):
            try:
                markers.append(RunMarker.model_validate_json(path.read_text()))
            except (OSError, ValidationError) as exc:
                log.error("%s is damaged, its run cannot be reported: %s", path, exc)
        return markers

    def done(self, run_id: int) -> None:
        """Forget a run whose result is spooled (or that never started a process)."""
        remove(self._path(run_id))


def interrupted_result(
    marker: RunMarker,
    run_dir: Path,
    process_dump_kind: ArtifactKind,
    leftover: KillOutcome | None,
) -> RunResult:
    """An ``error`` result for a run its agent was killed in, from what its folder
    holds: hangtest's events (iterations, time, CPUs, a stall it had reported)
    and its evidence as artifacts. ``leftover``: the outcome of killing the
    hangtest that outlived the agent, None when none was running."""
    observed, elapsed_s = read_events(run_dir / "stdout.jsonl")
    reasons = [
        "the agent was killed or restarted mid-run; reported by the restarted agent from "
        f"its run folder ({observed.iterations} iterations in {elapsed_s:.1f}s)"
    ]
    if marker.pid is None:
        reasons[0] = "the agent was killed or restarted before hangtest started"
    if observed.stall is not None:
        workers = [w.worker for w in observed.stall.workers]
        reasons.append(f"hangtest had reported a stall of workers {workers}")
    if leftover is not None:
        if leftover.gone:
            reasons.append(f"hangtest was still running: {leftover.detail}")
        else:
            reasons.append(f"could not kill: {leftover.detail} (reboot this machine)")
    start = observed.start
    return RunResult(
        status=RunStatus.ERROR,
        reason="; ".join(reasons),
        iterations=observed.iterations,
        duration_s=round(elapsed_s, 3),
        cpu_set=(start.cpu_set or []) if start else [],
        requested_cpu_set=marker.requested_cpu_set,
        gomaxprocs=start.gomaxprocs if start else marker.gomaxprocs,
        exit_code=None,
        errors=observed.errors,
        first_error=observed.first_error,
        stalled_workers=[w.worker for w in observed.stall.workers] if observed.stall else [],
        hangtest_version=start.hangtest_version if start else None,
        go_version=start.go_version if start else None,
        killed=leftover is not None,
        unkillable=leftover is not None and not leftover.gone,
        artifacts=evidence(run_dir, process_dump_kind),
    )


def read_events(stdout_log: Path) -> tuple[Observed, float]:
    """hangtest's events as far as the log got, and the last elapsed time they
    gave. A line cut by the kill, or any line that is not an event, is skipped:
    the rest is still evidence."""
    observed = Observed()
    elapsed_s = 0.0
    try:
        lines = stdout_log.read_bytes().splitlines()
    except OSError:
        return observed, elapsed_s
    for line in lines:
        try:
            event = parse_event(line)
        except ProtocolError:
            continue
        if event is None:
            continue
        observed.record(event)
        elapsed_s = max(elapsed_s, getattr(event, "elapsed_s", 0.0))
    return observed, elapsed_s


def evidence(run_dir: Path, process_dump_kind: ArtifactKind) -> list[Artifact]:
    """The files of a run folder that a finished run would have uploaded:
    goroutine dumps, process dumps (not a ``.gz`` a compression cut short left:
    the spool compresses them again), the export tables and stdout.jsonl."""
    if not run_dir.is_dir():
        return []
    found: list[tuple[ArtifactKind, Path]] = []
    found += [(ArtifactKind.GOROUTINES, p) for p in sorted(run_dir.glob("goroutines-*.txt"))]
    dumps = sorted(p for p in run_dir.glob("process-*") if p.suffix not in (".gz", ".tmp"))
    found += [(process_dump_kind, p) for p in dumps]
    found += [(ArtifactKind.EXPORTS, p) for p in [run_dir / "exports.json"] if p.is_file()]
    found += [(ArtifactKind.STDOUT, p) for p in [run_dir / "stdout.jsonl"] if p.is_file()]
    return [describe_artifact(kind, path) for kind, path in found if path.is_file()]
