"""The supervisor of a managed install (``reprofarm-agent supervise --root R``):
starts the current version's agent, restarts it when it fails, starts the new
version after a self-update, and rolls back a new version that does not stay up.

On Windows the scheduled task runs it through run-agent.ps1, from the
``known-good`` version's environment, so the supervisor itself always comes
from a version that has stayed up. What it does with the exit code of a
version that is not on trial (one on trial is rolled back, below)::

    EXIT_UPDATED (75)             a new version is current: start it at once
    EXIT_CREDENTIALS_REFUSED (3)  the api refuses every token of this agent: stop and
                                  exit 3, which the task shows as its last result and
                                  run-agent.ps1 writes to the event log (restarting
                                  cannot help: an admin must give a new token)
    EXIT_REBOOTING (4)            the agent is rebooting the machine: wait for it
    anything else                 a failure: restart, with a capped backoff

A version on trial (just switched to, see self_update.py) is confirmed once its
agent has registered with the api (it marks its environment ``.registered``)
and has been up ``confirm_after_s``: it becomes ``known-good``, and versions no
longer needed are removed. One that exits before that, or has not registered within
``trial_deadline_s`` (it runs but cannot reach the api: broken TLS, a bad pin), is rolled
back, whatever its exit code (3 and 75 included: a broken version cannot be
trusted to say why it stopped): ``current`` goes back to the previous version
and the new one is refused for good. Registration, not time alone, is the
proof: on a loaded machine a broken version can take longer to crash than any
fixed delay.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reprofarm_agent.exit_codes import (
    EXIT_CREDENTIALS_REFUSED,
    EXIT_NOTHING_INSTALLED,
    EXIT_REBOOTING,
    EXIT_UPDATED,
)
from reprofarm_agent.install_layout import InstallLayout, Trial

log = logging.getLogger(__name__)
_LOG_ROTATE_BYTES = 32 << 20
_STEADY_S = 60.0  # up this long, a failure starts the backoff again from its base
_NEVER_REGISTERED = -1  # the "exit code" of a trial stopped at its deadline


@dataclass
class Supervisor:
    layout: InstallLayout
    confirm_after_s: float = 60.0
    trial_deadline_s: float = 900.0
    restart_base_s: float = 1.0
    restart_cap_s: float = 60.0
    reboot_wait_s: float = 600.0
    poll_s: float = 0.5
    stopping: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.monotonic

    def run(self) -> int:
        """Supervise until stopped (returns 0) or until the agent's credentials
        are refused (returns 3)."""
        failures = 0
        while not self.stopping.is_set():
            version = self._version_to_start()
            if version is None:
                log.error("nothing is installed in %s: run install.ps1", self.layout.root)
                return EXIT_NOTHING_INSTALLED
            trial = self._trial(version)
            outcome = self._run_once(version, trial)
            if outcome is None:
                return 0
            code, lived, confirmed = outcome
            if trial is not None and not confirmed:
                # First, whatever the code: a new version's "credentials refused" (3),
                # "updated" (75) or "rebooting" (4) may be its bug, and only the
                # previous version can tell. Were 3 believed here, a release that
                # breaks token handling would stop every machine it reached for good.
                reason = (
                    f"did not register with the api within {self.trial_deadline_s:.0f}s"
                    if code == _NEVER_REGISTERED
                    else f"exited with code {code} {lived:.0f}s after it started"
                )
                self._roll_back(trial, reason)
                continue
            if code == EXIT_UPDATED:
                log.info("%s installed a new version; starting it", version)
                failures = 0
                continue
            if code == EXIT_CREDENTIALS_REFUSED:
                log.error(
                    "%s: the api refuses this agent's tokens (exit 3); stopping. Give it a new "
                    "enrollment token: re-run install.ps1 with $env:REPROFARM_TOKEN set",
                    version,
                )
                return code
            if code == EXIT_REBOOTING:
                log.warning("%s asked the machine to reboot; waiting for it", version)
                if self.stopping.wait(self.reboot_wait_s):
                    return 0
                continue
            failures = 1 if lived >= _STEADY_S else failures + 1
            delay = min(self.restart_cap_s, self.restart_base_s * 2 ** (failures - 1))
            log.warning(
                "%s exited with code %s after %.0fs; restarting in %.0fs (see %s)",
                version,
                code,
                lived,
                delay,
                self.layout.logs / "agent.log",
            )
            if self.stopping.wait(delay):
                return 0
        return 0

    def stop(self) -> None:
        self.stopping.set()

    # -- steps -------------------------------------------------------------

    def _version_to_start(self) -> str | None:
        """``current``, or ``known-good`` when current is missing or half-installed."""
        for pointer in ("current", "known-good"):
            version = self.layout.read_pointer(pointer)
            if version is not None and self.layout.is_ready(version):
                if pointer != "current":
                    log.warning("current is not usable; starting known-good %s", version)
                    self.layout.write_pointer("current", version)
                return version
        return None

    def _trial(self, version: str) -> Trial | None:
        """The trial of ``version``, if it is the one on trial. A trial of another
        version (a crash between recording it and switching) is dropped."""
        state = self.layout.load_state()
        if state.trial is None:
            return None
        if state.trial.version == version:
            return state.trial
        state.trial = None
        self.layout.save_state(state)
        return None

    def _run_once(self, version: str, trial: Trial | None) -> tuple[int, float, bool] | None:
        """Run the agent once: (exit code, seconds it lived, whether its trial was
        confirmed), or None when the supervisor was stopped meanwhile."""
        log_path = self.layout.logs / "agent.log"
        _rotate(log_path)
        env = {
            **os.environ,
            **self.layout.config_env(),
            "REPROFARM_INSTALL_ROOT": str(self.layout.root),
            "PYTHONUNBUFFERED": "1",
            "PYTHONUTF8": "1",
        }
        log.info("starting %s%s", version, " (on trial)" if trial else "")
        with log_path.open("ab") as out:
            child = subprocess.Popen(
                [str(self.layout.agent_exe(version)), "serve"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        started = self.clock()
        confirmed = trial is None
        while (code := child.poll()) is None:
            up_s = self.clock() - started
            if (
                trial is not None
                and not confirmed
                and up_s >= self.confirm_after_s
                and self.layout.has_registered(version)
            ):
                self._confirm(trial)
                confirmed = True
            if trial is not None and not confirmed and up_s >= self.trial_deadline_s:
                _stop_child(child)
                return _NEVER_REGISTERED, up_s, False
            if self.stopping.wait(self.poll_s):
                _stop_child(child)
                return None
        return code, self.clock() - started, confirmed

    def _confirm(self, trial: Trial) -> None:
        log.info("%s stayed up: it is now known-good", trial.version)
        self.layout.write_pointer("known-good", trial.version)
        state = self.layout.load_state()
        state.trial = None
        self.layout.save_state(state)
        self._prune()

    def _roll_back(self, trial: Trial, reason: str) -> None:
        log.error("%s %s: rolling back to %s", trial.version, reason, trial.previous)
        state = self.layout.load_state()
        state.refused[trial.version] = reason
        state.trial = None
        self.layout.save_state(state)
        self.layout.write_pointer("current", trial.previous)
        self._prune()

    def _prune(self) -> None:
        """Remove versions nothing needs: not current, not known-good, and not the
        one this supervisor runs from (its files are in use)."""
        keep = {self.layout.read_pointer("current"), self.layout.read_pointer("known-good")}
        if Path(sys.prefix).resolve().parent == self.layout.venvs.resolve():
            keep.add(Path(sys.prefix).name)
        for version in self.layout.installed():
            if version not in keep:
                log.info("removing %s", version)
                shutil.rmtree(self.layout.venv(version), ignore_errors=True)
                shutil.rmtree(self.layout.downloads(version), ignore_errors=True)


def _rotate(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size > _LOG_ROTATE_BYTES:
        path.replace(path.with_name(path.name + ".1"))


def _stop_child(child: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    child.terminate()
    try:
        child.wait(timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
