"""Supervising the processes of ``reprofarm up``: start them, restart one that
dies (with a capped backoff), stop them all on Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
_RESTART_CAP_S = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log_file.close()
        self.started_at = time.monotonic()


@dataclass
class Supervisor:
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def add(self, name: str, args: list[str], log_dir: Path) -> Child:
        child = Child(name, [sys.executable, "-m", "reprofarm_cli", *args], log_dir / f"{name}.log")
        self.children.append(child)
        return child

    def start_all(self) -> None:
        for child in self.children:
            child.start(self.env)

    def watch(self, poll_s: float = 0.5) -> None:
        """Restart children that exit, until stop() is called."""
        while not self.stopping.wait(poll_s):
            for child in self.children:
                assert child.process is not None
                code = child.process.poll()
                if code is None:
                    continue
                lived = time.monotonic() - child.started_at
                child.restarts = 0 if lived > 60 else child.restarts + 1
                delay = min(_RESTART_CAP_S, 0.5 * 2**child.restarts)
                log.warning(
                    "%s exited with %s; restarting in %.1fs (see %s)",
                    child.name,
                    code,
                    delay,
                    child.log_path,
                )
                if self.stopping.wait(delay):
                    return
                child.start(self.env)

    def stop(self, timeout_s: float = 15.0) -> None:
        self.stopping.set()
        for child in reversed(self.children):
            if child.process and child.process.poll() is None:
                os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
