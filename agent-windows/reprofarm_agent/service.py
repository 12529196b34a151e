"""``reprofarm agent``: the networked agent, a loop of named steps.

report the runs an earlier agent process was killed in (interrupted.py), once,
at start -> register (with the machine's secret: the name is bound to this
machine) -> (deliver spooled results) -> lease (remembered in ``inflight/``)
-> prepare (fetch the build,
place the CPUs) -> run (heartbeats carry progress and bring back cancel) ->
spool the result -> deliver (upload artifacts, post the result). Each step is
a method a test can call alone. The loop never dies of one bad iteration: it
backs off with jitter (capped) and logs a repeating error at most once a
minute. A refused token (401) sends it back to registration with its
enrollment token; when that is refused too, ``serve`` raises
EnrollmentRefusedError and the process exits non-zero for its supervisor.
"""

from __future__ import annotations

import logging
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path

from reprofarm_protocol.hangtest_events import HangtestEvent, ProgressEvent
from reprofarm_protocol.jobs import AgentRegister, Heartbeat, LeasedRun, RunReport
from reprofarm_protocol.runs import ArtifactKind, RunResult, RunStatus

from reprofarm_agent.client import ApiClient, gzip_file
from reprofarm_agent.errors import (
    AgentError,
    ApiRefusedError,
    ApiUnauthorizedError,
    ApiUnavailableError,
    EnrollmentRefusedError,
    PlacementError,
    RebootStartedError,
)
from reprofarm_agent.hardware import describe
from reprofarm_agent.identity import load_or_create
from reprofarm_agent.interrupted import RunMarkers, interrupted_result
from reprofarm_agent.placement import place
from reprofarm_agent.platform import Platform, Spawned
from reprofarm_agent.reboot import (
    DEFAULT_COMMANDS,
    RebootRefusedError,
    pending_report,
    reported,
    request_reboot,
)
from reprofarm_agent.runner import RunSpec, run_once
from reprofarm_agent.self_update import SelfUpdater, UpdateInstalled
from reprofarm_agent.settings import AgentSettings
from reprofarm_agent.spool import Spool, SpooledArtifact, SpooledResult

log = logging.getLogger(__name__)
_BACKOFF_CAP_S = 60.0
_COMPRESSED = (ArtifactKind.CORE, ArtifactKind.MINIDUMP)


@dataclass
class _Progress:
    iterations: int = 0
    elapsed_s: float = 0.0


@dataclass
class _LeaseKeeper:
    progress: _Progress = field(default_factory=_Progress)
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class AgentService:
    client: ApiClient
    platform: Platform
    settings: AgentSettings
    name: str
    pools: list[str]
    # Each idle agent costs the api one long-poll per wait: 50 s keeps 10,000 idle
    # agents at 200 polls/s, under the 60 s idle timeout of most proxies.
    lease_wait_s: float = 50.0
    sleep: Callable[[float], None] = time.sleep
    agent_id: int | None = None
    needs_reboot: bool = False
    unkillable_run: int | None = None
    os_name: str = ""
    updater: SelfUpdater | None = None  # managed installs only (self_update.managed_updater)
    _stop: threading.Event = field(default_factory=threading.Event)
    _failures: int = 0
    _last_log: float = 0.0

    @property
    def spool(self) -> Spool:
        return Spool(self.settings.work_dir)

    @property
    def markers(self) -> RunMarkers:
        return RunMarkers(self.settings.work_dir)

    def stop(self) -> None:
        self._stop.set()

    # -- steps -------------------------------------------------------------

    def register(self) -> int:
        """Register with the agent's own token if it has one, else (or if that is
        refused) with the enrollment token; EnrollmentRefusedError when both are."""
        hardware = describe(self.platform.probe())
        self.os_name = hardware.os
        body = AgentRegister(
            name=self.name,
            pools=self.pools,
            hardware=hardware,
            agent_version=package_version("reprofarm-agent"),
            machine_secret=load_or_create(self.settings.work_dir).machine_secret,
            reboot=pending_report(self.settings.work_dir, boot_time=self.platform.boot_time()),
        )
        self.agent_id = None
        if self.client.token:
            try:
                self.agent_id = self.client.register(body, with_token=self.client.token)
            except ApiUnauthorizedError:
                log.warning("this agent's token was refused; registering with the enrollment token")
        if self.agent_id is None:
            try:
                self.agent_id = self.client.register(body, with_token=self.client.enrollment_token)
            except ApiUnauthorizedError:
                raise EnrollmentRefusedError(
                    "the api refuses this agent's token and its enrollment token: ask an admin "
                    "for a new enrollment token (reprofarm token create --role agent) and "
                    "restart the agent with it"
                ) from None
        if body.reboot is not None:
            reported(self.settings.work_dir)
        log.info(
            "registered as agent %s (%s, %s)",
            self.agent_id,
            hardware.arch,
            hardware.fingerprint[:12],
        )
        return self.agent_id

    def deliver(self) -> int:
        """Upload and report everything spooled; returns how many were delivered.
        Raises ApiUnavailableError to be retried later."""
        delivered = 0
        for item in self.spool.pending():
            for artifact in item.artifacts:
                if not artifact.uploaded:
                    try:
                        self.client.upload_artifact(
                            item.run_id,
                            item.lease_token,
                            Path(artifact.path),
                            artifact.kind,
                            artifact.name,
                        )
                    except ApiUnauthorizedError:
                        raise  # our token: register again, then retry
                    except ApiRefusedError as exc:
                        log.error(
                            "run %s: the api refused artifact %s, not retrying it: %s",
                            item.run_id,
                            artifact.name,
                            exc,
                        )
                    artifact.uploaded = True
                    self.spool.save(item)
            try:
                self.client.post_result(item.run_id, item.lease_token, item.report)
            except ApiUnauthorizedError:
                raise
            except ApiRefusedError as exc:
                log.error("run %s: the api refused the result, dropping it: %s", item.run_id, exc)
            self.spool.done(item)
            delivered += 1
        return delivered

    def lease(self) -> LeasedRun | None:
        return self.client.lease(self.lease_wait_s)

    def prepare(self, leased: LeasedRun) -> RunSpec:
        binary = self._fetch_build(leased)
        cpus = place(self.platform.probe().cpus, leased.cpus, leased.affinity)
        extra: tuple[str, ...] = ()
        if leased.control_chance is not None:
            extra = ("-control-chance", str(leased.control_chance))
        return RunSpec(
            binary=binary,
            scenario=leased.scenario,
            placement=cpus,
            gomaxprocs=len(cpus.cpus),
            workers=leased.workers,
            iterations=leased.iterations,
            duration_s=leased.duration_s,
            stall_timeout_s=leased.stall_timeout_s,
            extra_args=extra,
        )

    def _fetch_build(self, leased: LeasedRun) -> Path:
        """The run's build. An api that goes away mid-download (a restart) is waited
        out, for up to one lease period while the lease's heartbeats go on: giving up
        at once abandoned the run, which was then lost at its lease's expiry and run
        again elsewhere."""
        give_up = time.monotonic() + leased.heartbeat_interval_s * 4
        delay = 0.5
        while True:
            try:
                return self.client.fetch_build(leased.build, self.settings.cache_dir / "fetched")
            except ApiUnavailableError as exc:
                if self._stop.is_set() or time.monotonic() + delay > give_up:
                    raise
                log.warning("run %s: its build: %s (retrying in %.1fs)", leased.run_id, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    @contextmanager
    def keep_lease(self, leased: LeasedRun) -> Iterator[_LeaseKeeper]:
        """Heartbeat the lease from a thread for as long as the block lasts: the run
        itself, and then the compression and upload of its dumps (a gzip of a
        1.2 GB core can outlast a short lease). A cancel from the api sets
        ``keeper.cancel``."""
        keeper = _LeaseKeeper()
        finished = threading.Event()

        def beat() -> None:
            while not finished.wait(leased.heartbeat_interval_s):
                try:
                    reply = self.client.heartbeat(
                        leased.run_id,
                        leased.lease_token,
                        Heartbeat(
                            iterations=keeper.progress.iterations,
                            elapsed_s=keeper.progress.elapsed_s,
                        ),
                    )
                except AgentError as exc:
                    log.warning("run %s: heartbeat failed: %s", leased.run_id, exc)
                    continue
                if reply.cancel:
                    keeper.cancel.set()

        heartbeats = threading.Thread(target=beat, name=f"heartbeat-{leased.run_id}", daemon=True)
        heartbeats.start()
        try:
            yield keeper
        finally:
            finished.set()
            heartbeats.join(timeout=5)

    def run(self, leased: LeasedRun, spec: RunSpec, keeper: _LeaseKeeper) -> RunResult:
        """Run hangtest; progress feeds the heartbeats, a cancel from the api stops it."""

        def on_event(event: HangtestEvent) -> None:
            if isinstance(event, ProgressEvent):
                keeper.progress.iterations = event.iterations
                keeper.progress.elapsed_s = event.elapsed_s

        def on_spawn(child: Spawned) -> None:
            # Recorded before the first event is read: an agent killed from here
            # on leaves a hangtest its restart must find and kill.
            marker = self.markers.get(leased.run_id)
            if marker is None:
                return  # a run started outside work_once (a test's own steps)
            identity = self.platform.process_identity(child.pid)
            self.markers.save(
                marker.model_copy(
                    update={
                        "pid": child.pid,
                        "process_identity": identity,
                        "requested_cpu_set": list(spec.placement.cpus),
                        "gomaxprocs": spec.gomaxprocs,
                    }
                )
            )

        settings = self.settings.model_copy(update={"process_dumps": leased.process_dumps})
        return run_once(
            spec,
            self.run_dir(leased.run_id),
            self.platform,
            settings,
            on_event=on_event,
            cancel=keeper.cancel,
            on_spawn=on_spawn,
        )

    def run_dir(self, run_id: int) -> Path:
        return self.settings.work_dir / "runs" / f"run-{run_id}"

    def spool_result(self, leased: LeasedRun, result: RunResult) -> None:
        """Put a run's result in the spool (compressing its process dumps), then
        forget its marker: from here the spool carries the run."""
        self._spool(leased.run_id, leased.lease_token, result)
        self.markers.done(leased.run_id)

    def _spool(self, run_id: int, lease_token: str, result: RunResult) -> None:
        artifacts = []
        for a in result.artifacts:
            path = Path(a.path)
            if a.kind in _COMPRESSED and path.exists():
                path = gzip_file(path)
            artifacts.append(SpooledArtifact(path=str(path), kind=a.kind.value, name=path.name))
        self.spool.save(
            SpooledResult(
                run_id=run_id,
                lease_token=lease_token,
                report=RunReport(result=result),
                artifacts=artifacts,
                run_dir=str(self.run_dir(run_id)),
            )
        )
        if result.unkillable:
            self.needs_reboot = True
            self.unkillable_run = run_id

    def reboot_if_allowed(self) -> None:
        """Once the evidence is delivered, reboot if the admin allowed it: raises
        RebootStartedError (the loop ends; the machine goes down). A failing
        command is reported once and not retried: a person must look."""
        if not self.settings.reboot_when_needed or self.spool.pending():
            return
        command = self.settings.reboot_command or DEFAULT_COMMANDS.get(self.os_name, [])
        if not command:
            log.error("no reboot command is known for %r: set --reboot-command", self.os_name)
            self.settings = self.settings.model_copy(update={"reboot_when_needed": False})
            return
        try:
            request_reboot(
                command,
                work_dir=self.settings.work_dir,
                run_id=self.unkillable_run,
                boot_time=self.platform.boot_time(),
            )
        except RebootRefusedError as exc:
            log.error("%s; reboot this machine by hand", exc)
            self.settings = self.settings.model_copy(update={"reboot_when_needed": False})
            return
        raise RebootStartedError(f"reboot requested for run {self.unkillable_run}")

    # -- the loop ----------------------------------------------------------

    def work_once(self) -> bool:
        """One pass: deliver, lease, run, deliver. Returns whether a run happened."""
        self.deliver()
        if self.needs_reboot:
            self.reboot_if_allowed()
            log.error("a run could not be killed: this machine needs a reboot; not leasing")
            self.sleep(self.lease_wait_s)
            return False
        leased = self.lease()
        if leased is None:
            return False
        self.markers.begin(leased, now=datetime.now(UTC))
        with self.keep_lease(leased) as keeper:
            try:
                spec = self.prepare(leased)
            except AgentError as exc:
                if not isinstance(exc, PlacementError):
                    # Nothing ran (the build could not be fetched): the run is
                    # left to its lease's expiry and retried, as it always was.
                    self.markers.done(leased.run_id)
                    raise
                result = RunResult(
                    status=RunStatus.ERROR,
                    reason=f"placement refused: {exc}",
                    iterations=0,
                    duration_s=0.0,
                    cpu_set=[],
                    requested_cpu_set=[],
                    gomaxprocs=0,
                    exit_code=None,
                )
            else:
                result = self.run(leased, spec, keeper)
            self.spool_result(leased, result)
            self.deliver()  # the lease is kept until the api has the result
        return True

    def report_interrupted_runs(self) -> list[int]:
        """At start, before leasing: every run an earlier agent process was killed
        in (kill, crash, reboot, update) gets an ``error`` result with its folder's
        evidence, spooled like any result; its leftover hangtest, if any, is
        killed first. Returns the runs reported. Needs no api: the spool
        delivers them. A marker whose run is spooled already (the agent died
        between the two) is only deleted, so nothing is reported twice."""
        spooled = {item.run_id for item in self.spool.pending()}
        reported: list[int] = []
        for marker in self.markers.pending():
            if marker.run_id in spooled:
                self.markers.done(marker.run_id)
                continue
            leftover = None
            if marker.pid is not None and marker.process_identity is not None:
                leftover = self.platform.kill_leftover(
                    marker.pid, marker.process_identity, self.settings.kill_timeout_s
                )
            run_dir = self.run_dir(marker.run_id)
            result = interrupted_result(marker, run_dir, self.platform.process_dump_kind, leftover)
            self._spool(marker.run_id, marker.lease_token, result)  # an unkillable one: reboot
            self.markers.done(marker.run_id)
            log.warning(
                "run %s (attempt %s) was interrupted by this agent's death; reporting it as "
                "error: %s",
                marker.run_id,
                marker.attempt,
                result.reason,
            )
            reported.append(marker.run_id)
        self._forget_unknown_run_folders()
        return reported

    def _forget_unknown_run_folders(self) -> list[Path]:
        """Run folders neither a marker nor a spooled result refers to (left by an
        agent older than the markers, or by a delivery whose deletion failed)
        have nobody to report them to: deleted, so dumps of dead runs do not
        fill the lab machine's disk."""
        runs = self.settings.work_dir / "runs"
        if not runs.is_dir():
            return []
        kept = {Path(item.run_dir).resolve() for item in self.spool.pending() if item.run_dir}
        kept |= {self.run_dir(run_id).resolve() for run_id in self.markers.run_ids()}
        forgotten = [d for d in sorted(runs.glob("run-*")) if d.resolve() not in kept]
        for folder in forgotten:
            shutil.rmtree(folder, ignore_errors=True)
        if forgotten:
            log.warning(
                "deleted %d run folders no result refers to: %s",
                len(forgotten),
                ", ".join(d.name for d in forgotten),
            )
        return forgotten

    def serve(self) -> None:
        """Register, then work until stopped, surviving api outages. Raises
        EnrollmentRefusedError when no token of this agent is accepted any more,
        and UpdateInstalled when a managed agent switched to a new version."""
        self.report_interrupted_runs()
        while not self._stop.is_set():
            try:
                if self.agent_id is None:
                    self.register()
                    self.update_between_runs(registered=True)
                ran = self.work_once()
                self._failures = 0
                self.update_between_runs(forced=ran)
            except (EnrollmentRefusedError, RebootStartedError):
                raise
            except ApiUnauthorizedError as exc:
                self._backoff(f"the api refused this agent's token: {exc}")
                self.agent_id = None  # token revoked: register again
            except ApiRefusedError as exc:
                self._backoff(f"the api refused a request: {exc}")
            except (ApiUnavailableError, AgentError) as exc:
                self._backoff(str(exc))

    def update_between_runs(self, *, forced: bool = False, registered: bool = False) -> None:
        """A managed agent updates itself at registration and after a run (or, idle,
        every update_check_s), never during one. Raises UpdateInstalled, which
        the loop does not catch: the process exits for its supervisor. A
        registration also tells the supervisor that this version works."""
        if self.updater is None:
            return
        if registered:
            self.updater.registered()
        if not self.updater.due(forced=forced or registered):
            return
        version = self.updater.update(self.client)
        if version is not None:
            raise UpdateInstalled(version)

    def _backoff(self, message: str) -> None:
        self._failures += 1
        delay = min(_BACKOFF_CAP_S, 0.5 * 2 ** min(self._failures, 8))
        delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography
        now = time.monotonic()
        if self._failures == 1 or now - self._last_log > 60:
            log.warning("%s (retrying in %.1fs; failure %d)", message, delay, self._failures)
            self._last_log = now
        self._stop.wait(delay)
