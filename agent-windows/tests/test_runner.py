"""The runner against real hangtest processes on this machine."""

import os
import signal
import sys
import threading
from pathlib import Path

import pytest
from reprofarm_agent.placement import CpuPlacement, place
from reprofarm_agent.platform import current_platform
from reprofarm_agent.runner import Ending, Observed, RunSpec, judge, run_once
from reprofarm_agent.settings import AgentSettings
from reprofarm_protocol.hangtest_events import ProgressEvent, StartEvent
from reprofarm_protocol.runs import ArtifactKind, RunStatus

FAST = AgentSettings(process_dumps=1, dump_interval_s=0, kill_timeout_s=10)
PLATFORM = current_platform(FAST)
ALL_CPUS = place(PLATFORM.probe().cpus, None, "all")
# A process dump starts with its format's signature: ELF core or MDMP minidump.
DUMP_MAGIC = {ArtifactKind.CORE: b"\x7fELF", ArtifactKind.MINIDUMP: b"MDMP"}
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="uses Linux signals")


def spec(binary: Path, **overrides) -> RunSpec:
    fields = {
        "binary": binary,
        "scenario": "pipe-close-race",
        "placement": ALL_CPUS,
        "gomaxprocs": len(ALL_CPUS.cpus),
        "workers": 2,
        "iterations": 0,
        "duration_s": 1.0,
        "stall_timeout_s": 2.0,
        "progress_interval_s": 0.2,
    }
    fields.update(overrides)
    return RunSpec(**fields)


def test_pipe_close_race_passes_on_one_cpu_reported_by_the_child(hangtest_binary, tmp_path):
    one = CpuPlacement(group=ALL_CPUS.group, cpus=(ALL_CPUS.cpus[-1],))
    result = run_once(spec(hangtest_binary, placement=one, gomaxprocs=1), tmp_path, PLATFORM, FAST)
    assert result.status is RunStatus.PASSED, result.reason
    assert result.cpu_set == list(one.cpus)
    assert result.gomaxprocs == 1
    assert result.iterations > 0
    assert [a.kind for a in result.artifacts] == [ArtifactKind.STDOUT]


@pytest.mark.needs("gcore")  # asserts core dumps
def test_control_deadlock_hangs_with_goroutine_dump_and_core(hangtest_binary, tmp_path):
    run = spec(
        hangtest_binary,
        scenario="control-deadlock",
        duration_s=20.0,
        stall_timeout_s=1.0,
        extra_args=("-control-chance", "0.01"),
    )
    result = run_once(run, tmp_path, PLATFORM, FAST)
    assert result.status is RunStatus.HUNG, result.reason
    assert result.killed
    assert not result.unkillable
    assert result.stalled_workers
    kinds = {a.kind: a for a in result.artifacts}
    goroutines = Path(kinds[ArtifactKind.GOROUTINES].path).read_text()
    assert "lockRightThenLeft" in goroutines
    assert "lockLeftThenRight" in goroutines
    dump = kinds[PLATFORM.process_dump_kind]
    with Path(dump.path).open("rb") as f:
        assert f.read(4) == DUMP_MAGIC[dump.kind]
    assert dump.bytes == Path(dump.path).stat().st_size


@linux_only
@pytest.mark.needs("gcore")  # the stopped process is dumped from outside
def test_outer_watchdog_catches_a_process_that_stops_talking(hangtest_binary, tmp_path):
    """A stopped process is what a runtime stuck as a whole looks like: no
    event at all, hangtest's own watchdog included."""
    stopped = threading.Event()

    def stop_on_first_progress(event):
        if isinstance(event, StartEvent):
            os.kill(event.pid, signal.SIGSTOP)
            stopped.set()

    run = spec(hangtest_binary, duration_s=30.0, stall_timeout_s=0.5, progress_interval_s=0.1)
    settings = FAST.model_copy(update={"silence_factor": 2.0})
    result = run_once(run, tmp_path, PLATFORM, settings, on_event=stop_on_first_progress)
    assert stopped.is_set()
    assert result.status is RunStatus.HUNG
    assert "outer watchdog" in result.reason
    assert "did not answer the dump request" in result.reason
    assert any(a.kind is PLATFORM.process_dump_kind for a in result.artifacts)


@linux_only
def test_real_io_errors_make_a_failed_run(hangtest_binary, tmp_path):
    """A real fault, not a scripted one: hangtest under an open-file limit that
    leaves its setup (runtime poller, loopback listener: 6 descriptors) room
    but not an iteration's sockets and pipe. Every iteration then fails with
    EMFILE, which is no "closed pipe": hangtest exits 1 with real errors."""
    limited = tmp_path / "hangtest-8-fds"
    limited.write_text(f'#!/bin/sh\nulimit -n 8 || exit 125\nexec "{hangtest_binary}" "$@"\n')
    limited.chmod(0o755)
    run = spec(limited, scenario="socket-pipe-mix", workers=1, iterations=3, duration_s=None)
    result = run_once(run, tmp_path / "out", PLATFORM, FAST)
    assert result.status is RunStatus.FAILED, result.reason
    assert result.exit_code == 1
    assert result.errors == 3
    assert result.first_error is not None
    assert "too many open files" in result.first_error
    assert "3 real errors" in result.reason


def test_bad_flags_make_an_error_run_not_a_failed_one(hangtest_binary, tmp_path):
    run = spec(hangtest_binary, extra_args=("-control-chance", "7"))
    result = run_once(run, tmp_path, PLATFORM, FAST)
    assert result.status is RunStatus.ERROR
    assert "-control-chance" in result.reason


def test_missing_binary_is_an_error_result_not_an_exception(tmp_path):
    result = run_once(spec(tmp_path / "nope"), tmp_path / "out", PLATFORM, FAST)
    assert result.status is RunStatus.ERROR
    assert "could not start" in result.reason


@linux_only
def test_gcore_missing_is_reported_but_the_hang_is_kept(hangtest_binary, tmp_path):
    run = spec(
        hangtest_binary,
        scenario="control-deadlock",
        duration_s=20.0,
        stall_timeout_s=0.5,
        extra_args=("-control-chance", "0.05"),
    )
    from reprofarm_agent.platform.linux import LinuxPlatform

    result = run_once(run, tmp_path, LinuxPlatform(gcore=str(tmp_path / "no-gcore")), FAST)
    assert result.status is RunStatus.HUNG
    assert "process dump 1" in result.reason
    assert any(a.kind is ArtifactKind.GOROUTINES for a in result.artifacts)


def _progress(n: int) -> ProgressEvent:
    return ProgressEvent.model_validate(
        {
            "event": "progress",
            "v": 1,
            "t": "2026-01-01T00:00:00Z",
            "elapsed_s": 1,
            "iterations": n,
            "per_worker": [n],
            "errors": 0,
        }
    )


def _start() -> StartEvent:
    return StartEvent.model_validate(
        {
            "event": "start",
            "v": 1,
            "t": "2026-01-01T00:00:00Z",
            "hangtest_version": "test",
            "go_version": "go1.27.3",
            "goos": "linux",
            "goarch": "amd64",
            "gomaxprocs": 1,
            "num_cpu": 1,
            "cpu_set": [0],
            "pid": 1,
            "scenario": "pipe-close-race",
            "workers": 1,
            "iterations": 0,
            "duration_s": 1,
            "stall_timeout_s": 1,
            "on_stall": "dump-and-wait",
            "args": [],
        }
    )


def test_exit_without_done_is_an_error_not_a_pass():
    observed = Observed()
    observed.record(_start())
    observed.record(_progress(5))
    status, reason = judge(Ending.EXITED, observed, 0, "killed")
    assert status is RunStatus.ERROR
    assert "exited 0 without a done event" in reason


def test_exit_before_start_is_an_error():
    observed = Observed()
    status, reason = judge(Ending.EXITED, observed, 2, "hangtest: bad flag")
    assert status is RunStatus.ERROR
    assert "before starting: hangtest: bad flag" in reason
