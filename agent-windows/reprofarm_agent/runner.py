"""One hangtest run, from start to verified death.

The steps are separate functions (start, follow, capture, stop, judge) so a
test can drive each. The reason a run ended is recorded apart from its exit
code: a hung process is killed, and its exit code then says nothing.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO

from reprofarm_analyzer.sidecar import build_sidecar, dump_sidecar
from reprofarm_protocol.errors import ProtocolError
from reprofarm_protocol.hangtest_events import (
    DoneEvent,
    DumpEvent,
    ErrorEvent,
    HangtestEvent,
    ProgressEvent,
    StallEvent,
    StartEvent,
    parse_event,
)
from reprofarm_protocol.runs import Artifact, ArtifactKind, RunResult, RunStatus

from reprofarm_agent.artifacts import describe_artifact
from reprofarm_agent.binaries import read_binary_target
from reprofarm_agent.durations import format_duration
from reprofarm_agent.errors import CaptureError
from reprofarm_agent.placement import CpuPlacement
from reprofarm_agent.platform import KillOutcome, Platform, Spawned
from reprofarm_agent.settings import AgentSettings

EventSink = Callable[[HangtestEvent], None]
Clock = Callable[[], float]

# How long an on-demand goroutine dump may take to appear after the request.
_DUMP_REQUEST_WAIT_S = 5.0
# Past the asked duration, what a run may take before the outer watchdog
# calls it hung: the last iterations, plus hangtest's own stall detection.
_BUDGET_GRACE_S = 30.0


@dataclass(frozen=True)
class RunSpec:
    binary: Path
    scenario: str
    placement: CpuPlacement
    gomaxprocs: int
    workers: int = 10
    iterations: int = 100_000
    duration_s: float | None = None
    stall_timeout_s: float = 30.0
    progress_interval_s: float = 1.0
    extra_args: tuple[str, ...] = ()

    def argv(self, dump_dir: Path) -> list[str]:
        args = [
            str(self.binary),
            "-scenario",
            self.scenario,
            "-workers",
            str(self.workers),
            "-iterations",
            str(self.iterations),
            "-stall-timeout",
            format_duration(self.stall_timeout_s),
            "-progress-interval",
            format_duration(self.progress_interval_s),
            "-on-stall",
            "dump-and-wait",
            "-dump-dir",
            str(dump_dir),
        ]
        if self.duration_s:
            args += ["-duration", format_duration(self.duration_s)]
        return [*args, *self.extra_args]

    @property
    def time_budget_s(self) -> float | None:
        if not self.duration_s:
            return None
        return self.duration_s + 2 * self.stall_timeout_s + _BUDGET_GRACE_S


class Ending(StrEnum):
    """Why following the process stopped."""

    EXITED = "exited"
    STALL = "stall"  # hangtest's own watchdog
    SILENT = "silent"  # outer watchdog: no event at all
    OVER_BUDGET = "over-budget"  # outer watchdog: far past the asked duration
    CANCELLED = "cancelled"  # the controller asked to stop


@dataclass
class Observed:
    """Everything the agent learned from hangtest's events."""

    start: StartEvent | None = None
    progress: ProgressEvent | None = None
    done: DoneEvent | None = None
    stall: StallEvent | None = None
    dumps: list[DumpEvent] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    protocol_errors: list[str] = field(default_factory=list)

    def record(self, event: HangtestEvent) -> None:
        match event:
            case StartEvent():
                self.start = event
            case ProgressEvent():
                self.progress = event
            case DoneEvent():
                self.done = event
            case StallEvent():
                self.stall = event
            case DumpEvent():
                self.dumps.append(event)
            case ErrorEvent():
                self.errors += 1
                if self.first_error is None:
                    self.first_error = (
                        f"worker {event.worker} iteration {event.iteration}: {event.message}"
                    )

    @property
    def iterations(self) -> int:
        for source in (self.done, self.stall, self.progress):
            if source is not None:
                return source.iterations
        return 0


_EOF = object()


def _pump_stdout(stream: IO[bytes], log: Path, out: queue.Queue[object]) -> None:
    """Copy every line to the log first (nothing lost, even a bad line), then
    hand the parsed event (or the protocol error) to the follower."""
    with log.open("wb") as f:
        for line in iter(stream.readline, b""):
            f.write(line)
            f.flush()
            try:
                event = parse_event(line)
            except ProtocolError as exc:
                out.put(exc)
                continue
            if event is not None:
                out.put(event)
    out.put(_EOF)


@dataclass
class Follower:
    """Reads the child's events until it exits, stalls or goes silent."""

    spec: RunSpec
    settings: AgentSettings
    events: queue.Queue[object]
    observed: Observed
    on_event: EventSink | None
    clock: Clock
    cancel: threading.Event | None = None

    def _take(self, timeout: float) -> object | None:
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, ProtocolError):
            self.observed.protocol_errors.append(str(item))
        elif item is not _EOF:
            event: HangtestEvent = item  # type: ignore[assignment]
            self.observed.record(event)
            if self.on_event is not None:
                self.on_event(event)
        return item

    def follow(self) -> Ending:
        started = last_event = self.clock()
        silence_limit = max(
            self.settings.silence_factor * self.spec.stall_timeout_s,
            5 * self.spec.progress_interval_s,
        )
        budget = self.spec.time_budget_s
        while True:
            # Sleep until the next watchdog deadline instead of polling: the
            # agent must not take CPU time from the run it measures.
            deadline = last_event + silence_limit
            if budget is not None:
                deadline = min(deadline, started + budget)
            item = self._take(timeout=min(max(deadline - self.clock(), 0.0), 0.5) + 0.01)
            now = self.clock()
            if item is _EOF:
                return Ending.EXITED
            if self.cancel is not None and self.cancel.is_set():
                return Ending.CANCELLED
            if item is not None:
                last_event = now
                if isinstance(item, StallEvent):
                    return Ending.STALL
            if now - last_event > silence_limit:
                return Ending.SILENT
            if budget is not None and now - started > budget:
                return Ending.OVER_BUDGET

    def await_dump_event(self, timeout_s: float) -> DumpEvent | None:
        deadline = self.clock() + timeout_s
        before = len(self.observed.dumps)
        while self.clock() < deadline:
            if self._take(timeout=0.1) is _EOF:
                break
            if len(self.observed.dumps) > before:
                return self.observed.dumps[-1]
        return None


def capture(
    child: Spawned,
    follower: Follower,
    ending: Ending,
    out_dir: Path,
    platform: Platform,
    settings: AgentSettings,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[Artifact], list[str]]:
    """Keep the evidence of a hang, in order: goroutine dump, then process
    dumps from outside (never from inside: in-process minidumps can deadlock)."""
    artifacts: list[Artifact] = []
    problems: list[str] = []
    observed = follower.observed
    dump_paths: list[str] = []
    if observed.stall is not None:
        dump_paths.append(observed.stall.goroutine_dump)
        if observed.stall.dump_error:
            problems.append(f"goroutine dump: {observed.stall.dump_error}")
    if ending is not Ending.STALL:
        # hangtest's own watchdog did not speak: ask for a dump; a runtime
        # stuck hard enough may not answer, which the process dump covers.
        platform.request_goroutine_dump(child)
        dump = follower.await_dump_event(_DUMP_REQUEST_WAIT_S)
        if dump is None:
            problems.append("goroutine dump: hangtest did not answer the dump request")
        else:
            dump_paths.append(dump.goroutine_dump)
    for path in dump_paths:
        if path and Path(path).exists():
            artifacts.append(describe_artifact(ArtifactKind.GOROUTINES, Path(path)))
    for i in range(settings.process_dumps):
        if i:
            sleep(settings.dump_interval_s)
        try:
            dumped = platform.dump_process(child, out_dir / f"process-{i + 1}")
        except CaptureError as exc:
            problems.append(f"process dump {i + 1}: {exc}")
            continue
        artifacts.append(describe_artifact(platform.process_dump_kind, dumped))
    if any(a.kind is ArtifactKind.MINIDUMP for a in artifacts):
        sidecar = _write_sidecar(platform.system_dlls(), out_dir, problems)
        if sidecar is not None:
            artifacts.append(describe_artifact(ArtifactKind.EXPORTS, sidecar))
    return artifacts, problems


def _write_sidecar(dlls: list[Path], out_dir: Path, problems: list[str]) -> Path | None:
    """The export tables of this machine's system DLLs, beside its minidumps: the
    analyzer names frames with them (``ntdll!NtReadFile+0x14``). A failure costs
    names, never the run."""
    if not dlls:
        return None
    try:
        sidecar = build_sidecar(dlls)
    except (OSError, ValueError) as exc:
        problems.append(f"export tables: {exc}")
        return None
    path = out_dir / "exports.json"
    path.write_bytes(dump_sidecar(sidecar))
    return path


def judge(
    ending: Ending, observed: Observed, exit_code: int | None, stderr_tail: str
) -> tuple[RunStatus, str]:
    """The run's status and a reason a person can read."""
    if ending is Ending.STALL and observed.stall is not None:
        workers = [w.worker for w in observed.stall.workers]
        longest = max(w.stalled_s for w in observed.stall.workers)
        return RunStatus.HUNG, f"stall: workers {workers} made no progress for {longest:.1f}s"
    if ending is Ending.SILENT:
        return RunStatus.HUNG, "outer watchdog: hangtest sent no event (its own watchdog is stuck)"
    if ending is Ending.OVER_BUDGET:
        return RunStatus.HUNG, "outer watchdog: the run went far past its duration"
    if ending is Ending.CANCELLED:
        return RunStatus.ERROR, "cancelled by the controller"
    if observed.protocol_errors:
        return RunStatus.ERROR, f"protocol: {observed.protocol_errors[0]}"
    if observed.start is None:
        return RunStatus.ERROR, f"hangtest exited {exit_code} before starting: {stderr_tail}"
    done = observed.done
    if done is None:
        return RunStatus.ERROR, f"hangtest exited {exit_code} without a done event: {stderr_tail}"
    if exit_code == 0 and done.exit_code == 0:
        return RunStatus.PASSED, f"{done.reason}: {done.iterations} iterations"
    if exit_code == 1 and done.errors > 0:
        return RunStatus.FAILED, f"{done.errors} real errors; first: {observed.first_error}"
    return RunStatus.ERROR, f"hangtest ended {done.reason} with exit code {exit_code}"


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:]) or "(no stderr)"


def _error_result(spec: RunSpec, reason: str) -> RunResult:
    return RunResult(
        status=RunStatus.ERROR,
        reason=reason,
        iterations=0,
        duration_s=0.0,
        cpu_set=[],
        requested_cpu_set=list(spec.placement.cpus),
        gomaxprocs=spec.gomaxprocs,
        exit_code=None,
    )


def run_once(
    spec: RunSpec,
    out_dir: Path,
    platform: Platform,
    settings: AgentSettings,
    on_event: EventSink | None = None,
    clock: Clock = time.monotonic,
    cancel: threading.Event | None = None,
    on_spawn: Callable[[Spawned], None] | None = None,
) -> RunResult:
    """Run hangtest once; on a hang, dump it before killing it. Never raises
    for what the child does: every way it can end is a RunResult. ``on_spawn``
    hears of the child as soon as it exists (the agent records its pid, so a
    restart after the agent's death can kill it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stdout_log, stderr_log = out_dir / "stdout.jsonl", out_dir / "stderr.txt"
    env = dict(os.environ, GOMAXPROCS=str(spec.gomaxprocs), GOTRACEBACK="all")
    binary_arch = read_binary_target(spec.binary) if spec.binary.exists() else None
    with stderr_log.open("wb") as stderr:
        try:
            child = platform.spawn_on_cpus(spec.argv(out_dir), spec.placement, env, stderr)
        except OSError as exc:
            return _error_result(spec, f"could not start {spec.binary}: {exc}")
    if on_spawn is not None:
        try:
            on_spawn(child)
        except BaseException:
            platform.kill_tree(child, settings.kill_timeout_s)  # no run without its record
            raise
    assert child.popen.stdout is not None
    events: queue.Queue[object] = queue.Queue()
    pump = threading.Thread(
        target=_pump_stdout, args=(child.popen.stdout, stdout_log, events), daemon=True
    )
    pump.start()
    observed = Observed()
    follower = Follower(spec, settings, events, observed, on_event, clock, cancel)
    started = clock()
    ending = follower.follow()
    artifacts: list[Artifact] = []
    problems: list[str] = []
    if ending not in (Ending.EXITED, Ending.CANCELLED):
        artifacts, problems = capture(child, follower, ending, out_dir, platform, settings)
    duration = clock() - started
    killed: KillOutcome = platform.kill_tree(child, settings.kill_timeout_s)
    pump.join(timeout=5)
    exit_code = child.popen.returncode if ending is Ending.EXITED else None
    status, reason = judge(ending, observed, exit_code, _tail(stderr_log))
    if problems:
        reason += "; capture: " + "; ".join(problems)
    if not killed.gone:
        reason += f"; could not kill: {killed.detail} (reboot this machine)"
    if stdout_log.exists():
        artifacts.append(describe_artifact(ArtifactKind.STDOUT, stdout_log))
    start = observed.start
    return RunResult(
        status=status,
        reason=reason,
        iterations=observed.iterations,
        duration_s=round(duration, 3),
        cpu_set=(start.cpu_set or []) if start else [],
        requested_cpu_set=list(spec.placement.cpus),
        gomaxprocs=start.gomaxprocs if start else spec.gomaxprocs,
        exit_code=exit_code,
        errors=observed.errors,
        first_error=observed.first_error,
        stalled_workers=[w.worker for w in observed.stall.workers] if observed.stall else [],
        hangtest_version=start.hangtest_version if start else None,
        go_version=start.go_version if start else None,
        binary_arch=binary_arch,
        killed=ending is not Ending.EXITED,
        unkillable=not killed.gone,
        artifacts=artifacts,
    )
