"""The supervisor of a managed install, with real child processes: each version's
``reprofarm-agent`` here is a small script that does what the test scripts for
it (crash, serve, refuse, or switch to another version with self_update's own
``switch``, as a real update does). The real agent, wheels and api are in
tests/e2e/test_agent_self_update.py; here each rule of the supervisor is pinned
quickly and exactly.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from reprofarm_agent.install_layout import InstallLayout
from reprofarm_agent.supervise import Supervisor

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the scripted agents are POSIX scripts")

A, B = "1.0.0", "2.0.0"
C = "3.0.0"

FAKE_AGENT = """#!{python}
# A scripted agent: each start takes the next action listed for its version.
import json, pathlib, sys, time
root = pathlib.Path({root!r})
version = {version!r}
plan = json.loads((root / "plan.json").read_text())
action = plan[version].pop(0) if plan[version] else "serve"
(root / "plan.json").write_text(json.dumps(plan))
with (root / "starts.log").open("a") as log:
    log.write(version + " " + action + "\\n")
if action == "crash":
    sys.exit(1)
if action == "refused":
    sys.exit(3)
if action == "exit75":
    sys.exit(75)
if action == "hang":
    (root / "hang.pid").write_text(str(__import__("os").getpid()))
    while True:
        time.sleep(1)
if action.startswith("update:"):
    from reprofarm_agent.install_layout import InstallLayout
    from reprofarm_agent.self_update import switch
    switch(InstallLayout(root), to=action.split(":")[1], previous=version, now=time.time())
    sys.exit(75)
from reprofarm_agent.install_layout import InstallLayout
InstallLayout(root).mark_registered(version)  # as the agent does once the api accepted it
while True:  # serve
    time.sleep(1)
"""


def install(root: Path, plan: dict[str, list[str]]) -> InstallLayout:
    layout = InstallLayout(root)
    for version in plan:
        exe = layout.agent_exe(version)
        exe.parent.mkdir(parents=True)
        exe.write_text(FAKE_AGENT.format(python=sys.executable, root=str(root), version=version))
        exe.chmod(0o755)
        layout.mark_ready(version)
    (root / "plan.json").write_text(json.dumps(plan))
    layout.write_pointer("current", A)
    layout.write_pointer("known-good", A)
    return layout


def starts(layout: InstallLayout) -> list[str]:
    path = layout.root / "starts.log"
    return path.read_text().split("\n")[:-1] if path.exists() else []


class Running:
    """The supervisor in a thread, stopped (and its child with it) at the end."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.supervisor.run()

    def wait_for(self, what: str, check, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(
            f"timed out waiting for {what}; starts: {starts(self.supervisor.layout)}"
        )

    def stop(self) -> int | None:
        self.supervisor.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the supervisor did not stop"
        return self.code


def supervisor(layout: InstallLayout, confirm_after_s: float = 30.0) -> Supervisor:
    return Supervisor(layout, confirm_after_s=confirm_after_s, restart_base_s=0.05, poll_s=0.05)


def test_a_trial_that_runs_but_never_registers_is_stopped_and_rolled_back(tmp_path):
    """It neither exits nor reaches the api (broken TLS, a bad pin): without a deadline it
    would run on trial forever, doing no work."""
    layout = install(tmp_path, {A: ["update:" + B, "serve"], B: ["hang"]})
    running = Running(
        Supervisor(
            layout, confirm_after_s=0.1, trial_deadline_s=1.0, restart_base_s=0.05, poll_s=0.05
        )
    )
    running.wait_for("A to serve again", lambda: len(starts(layout)) == 3)
    assert running.stop() == 0
    assert starts(layout) == [f"{A} update:{B}", f"{B} hang", f"{A} serve"]
    assert layout.read_pointer("current") == A
    assert "did not register" in layout.load_state().refused[B]
    hung = int((tmp_path / "hang.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(hung, 0)


def test_a_new_version_that_fails_on_trial_is_rolled_back_and_refused(tmp_path):
    layout = install(tmp_path, {A: ["update:" + B, "serve"], B: ["crash"]})
    running = Running(supervisor(layout))
    running.wait_for("A to serve again", lambda: len(starts(layout)) == 3)
    assert running.stop() == 0
    assert starts(layout) == [f"{A} update:{B}", f"{B} crash", f"{A} serve"]
    assert layout.read_pointer("current") == A
    assert layout.read_pointer("known-good") == A
    state = layout.load_state()
    assert state.trial is None
    assert "exited with code 1" in state.refused[B]


def test_a_new_version_that_stays_up_becomes_known_good_and_the_old_one_goes(tmp_path):
    layout = install(tmp_path, {A: ["update:" + B], B: ["serve"]})
    running = Running(supervisor(layout, confirm_after_s=0.5))
    running.wait_for("B to be confirmed", lambda: layout.read_pointer("known-good") == B)
    running.wait_for("A to be removed", lambda: not layout.venv(A).exists())
    assert running.stop() == 0
    assert starts(layout) == [f"{A} update:{B}", f"{B} serve"]
    assert layout.read_pointer("current") == B
    assert layout.load_state().trial is None
    assert layout.installed() == [B]


def test_a_new_version_that_never_registers_stays_on_trial_and_a_late_crash_rolls_back(tmp_path):
    # "hang" stays up without registering (an api it cannot reach, say): not confirmed,
    # however long; when it then fails, it is rolled back.
    layout = install(tmp_path, {A: ["update:" + C, "serve"], C: ["hang"]})
    running = Running(supervisor(layout, confirm_after_s=0.1))
    running.wait_for("C to start", lambda: len(starts(layout)) == 2)
    time.sleep(1.0)
    assert layout.read_pointer("known-good") == A
    assert layout.load_state().trial is not None
    (pid,) = [int(p) for p in (layout.root / "hang.pid").read_text().split()]
    os.kill(pid, 9)
    running.wait_for("A to serve again", lambda: len(starts(layout)) == 3)
    assert running.stop() == 0
    assert layout.read_pointer("current") == A
    assert "exited with code -9" in layout.load_state().refused[C]


def test_a_new_version_that_says_credentials_refused_on_trial_is_rolled_back(tmp_path):
    # B exits 3 ("the api refuses my tokens") before it was confirmed: its token
    # handling may be what is broken, so the supervisor must not stop for good on
    # its word; A, which worked with the same tokens, runs again.
    layout = install(tmp_path, {A: ["update:" + B, "serve"], B: ["refused"]})
    running = Running(supervisor(layout))
    running.wait_for("A to serve again", lambda: len(starts(layout)) == 3)
    assert running.stop() == 0, "the supervisor stopped on the trial version's exit code 3"
    assert starts(layout) == [f"{A} update:{B}", f"{B} refused", f"{A} serve"]
    assert layout.read_pointer("current") == A
    assert layout.read_pointer("known-good") == A
    assert "exited with code 3" in layout.load_state().refused[B]


def test_a_new_version_that_exits_updated_on_trial_is_rolled_back(tmp_path):
    # A version on trial never updates (self_update waits for its confirmation), so
    # its exit code 75 is a bug: believed, the supervisor would start it again.
    layout = install(tmp_path, {A: ["update:" + B, "serve"], B: ["exit75"]})
    running = Running(supervisor(layout))
    running.wait_for("A to serve again", lambda: len(starts(layout)) == 3)
    assert running.stop() == 0
    assert starts(layout) == [f"{A} update:{B}", f"{B} exit75", f"{A} serve"]
    assert "exited with code 75" in layout.load_state().refused[B]


def test_refused_credentials_stop_the_supervisor_with_exit_code_3(tmp_path):
    layout = install(tmp_path, {A: ["refused"]})
    running = Running(supervisor(layout))
    running.thread.join(20)
    assert running.code == 3
    assert starts(layout) == [f"{A} refused"]  # not restarted: only a new token helps


def test_a_failure_outside_a_trial_restarts_the_same_version(tmp_path):
    layout = install(tmp_path, {A: ["crash", "crash", "serve"]})
    running = Running(supervisor(layout))
    running.wait_for("the third start", lambda: len(starts(layout)) == 3)
    assert running.stop() == 0
    assert starts(layout) == [f"{A} crash", f"{A} crash", f"{A} serve"]
    assert layout.read_pointer("current") == A
    assert layout.load_state().refused == {}


def test_an_unusable_current_falls_back_to_known_good(tmp_path):
    layout = install(tmp_path, {A: ["serve"]})
    layout.write_pointer("current", B)  # B was never installed
    running = Running(supervisor(layout))
    running.wait_for("A to start", lambda: len(starts(layout)) == 1)
    assert running.stop() == 0
    assert starts(layout) == [f"{A} serve"]
    assert layout.read_pointer("current") == A
