"""``reprofarm agent``: the networked agent, a loop of named steps.

register (with the machine's secret: the name is bound to this machine)
-> (deliver spooled results) -> lease -> prepare (fetch the build,
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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
)
from reprofarm_agent.hardware import describe
from reprofarm_agent.identity import load_or_create
from reprofarm_agent.placement import place
from reprofarm_agent.platform import Platform
from reprofarm_agent.runner import RunSpec, run_once
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
class AgentService:
    client: ApiClient
    platform: Platform
    settings: AgentSettings
    name: str
    pools: list[str]
    lease_wait_s: float = 20.0
    sleep: Callable[[float], None] = time.sleep
    agent_id: int | None = None
    needs_reboot: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _failures: int = 0
    _last_log: float = 0.0

    @property
    def spool(self) -> Spool:
        return Spool(self.settings.work_dir)

    def stop(self) -> None:
        self._stop.set()

    # -- steps -------------------------------------------------------------

    def register(self) -> int:
        """Register with the agent's own token if it has one, else (or if that is
        refused) with the enrollment token; EnrollmentRefusedError when both are."""
        hardware = describe(self.platform.probe())
        body = AgentRegister(
            name=self.name,
            pools=self.pools,
            hardware=hardware,
            agent_version=package_version("reprofarm-agent"),
            machine_secret=load_or_create(self.settings.work_dir).machine_secret,
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
        binary = self.client.fetch_build(leased.build, self.settings.cache_dir / "fetched")
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

    def run(self, leased: LeasedRun, spec: RunSpec) -> RunResult:
        """Run with a heartbeat thread beside it; a cancel from the api stops it."""
        progress = _Progress()
        cancel = threading.Event()
        finished = threading.Event()

        def on_event(event: HangtestEvent) -> None:
            if isinstance(event, ProgressEvent):
                progress.iterations, progress.elapsed_s = event.iterations, event.elapsed_s

        def beat() -> None:
            while not finished.wait(leased.heartbeat_interval_s):
                try:
                    reply = self.client.heartbeat(
                        leased.run_id,
                        leased.lease_token,
                        Heartbeat(iterations=progress.iterations, elapsed_s=progress.elapsed_s),
                    )
                except AgentError as exc:
                    log.warning("run %s: heartbeat failed: %s", leased.run_id, exc)
                    continue
                if reply.cancel:
                    cancel.set()

        heartbeats = threading.Thread(target=beat, name=f"heartbeat-{leased.run_id}", daemon=True)
        heartbeats.start()
        settings = self.settings.model_copy(update={"process_dumps": leased.process_dumps})
        try:
            return run_once(
                spec,
                self.run_dir(leased.run_id),
                self.platform,
                settings,
                on_event=on_event,
                cancel=cancel,
            )
        finally:
            finished.set()
            heartbeats.join(timeout=5)

    def run_dir(self, run_id: int) -> Path:
        return self.settings.work_dir / "runs" / f"run-{run_id}"

    def spool_result(self, leased: LeasedRun, result: RunResult) -> None:
        run_id = leased.run_id
        artifacts = []
        for a in result.artifacts:
            path = Path(a.path)
            if a.kind in _COMPRESSED and path.exists():
                path = gzip_file(path)
            artifacts.append(SpooledArtifact(path=str(path), kind=a.kind.value, name=path.name))
        self.spool.save(
            SpooledResult(
                run_id=run_id,
                lease_token=leased.lease_token,
                report=RunReport(result=result),
                artifacts=artifacts,
                run_dir=str(self.run_dir(run_id)),
            )
        )
        if result.unkillable:
            self.needs_reboot = True

    # -- the loop ----------------------------------------------------------

    def work_once(self) -> bool:
        """One pass: deliver, lease, run, deliver. Returns whether a run happened."""
        self.deliver()
        if self.needs_reboot:
            log.error("a run could not be killed: this machine needs a reboot; not leasing")
            self.sleep(self.lease_wait_s)
            return False
        leased = self.lease()
        if leased is None:
            return False
        try:
            spec = self.prepare(leased)
        except PlacementError as exc:
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
            result = self.run(leased, spec)
        self.spool_result(leased, result)
        self.deliver()
        return True

    def serve(self) -> None:
        """Register, then work until stopped, surviving api outages. Raises
        EnrollmentRefusedError when no token of this agent is accepted any more."""
        while not self._stop.is_set():
            try:
                if self.agent_id is None:
                    self.register()
                self.work_once()
                self._failures = 0
            except EnrollmentRefusedError:
                raise
            except ApiUnauthorizedError as exc:
                self._backoff(f"the api refused this agent's token: {exc}")
                self.agent_id = None  # token revoked: register again
            except ApiRefusedError as exc:
                self._backoff(f"the api refused a request: {exc}")
            except (ApiUnavailableError, AgentError) as exc:
                self._backoff(str(exc))

    def _backoff(self, message: str) -> None:
        self._failures += 1
        delay = min(_BACKOFF_CAP_S, 0.5 * 2 ** min(self._failures, 8))
        delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography
        now = time.monotonic()
        if self._failures == 1 or now - self._last_log > 60:
            log.warning("%s (retrying in %.1fs; failure %d)", message, delay, self._failures)
            self._last_log = now
        self._stop.wait(delay)
