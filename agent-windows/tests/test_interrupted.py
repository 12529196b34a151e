"""What a restarted agent needs from the OS and from its state folder to report
the runs it was killed in: leftover hangtest processes found by the identity
recorded at spawn (real processes), and markers that a crash cannot garble."""

import os
import stat
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from reprofarm_agent.interrupted import RunMarker, RunMarkers
from reprofarm_agent.placement import place
from reprofarm_agent.platform import Spawned, current_platform
from reprofarm_agent.runner import RunSpec
from reprofarm_agent.settings import AgentSettings

PLATFORM = current_platform(AgentSettings())
ALL_CPUS = place(PLATFORM.probe().cpus, None, "all")


def start_hangtest(binary: Path, run_dir: Path) -> Spawned:
    """A long hangtest as the agent starts one, its events copied to a file by a
    reader that outlives the test's interest (as if another agent process read
    them): nothing here kills it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(
        binary=binary,
        scenario="pipe-close-race",
        placement=ALL_CPUS,
        gomaxprocs=len(ALL_CPUS.cpus),
        workers=1,
        iterations=0,
        duration_s=120.0,
        progress_interval_s=0.2,
    )
    with (run_dir / "stderr.txt").open("wb") as stderr:
        child = PLATFORM.spawn_on_cpus(spec.argv(run_dir), spec.placement, dict(os.environ), stderr)
    assert child.popen.stdout is not None
    stdout = child.popen.stdout

    def copy() -> None:
        with (run_dir / "stdout.jsonl").open("wb") as f:
            for line in iter(stdout.readline, b""):
                f.write(line)

    threading.Thread(target=copy, daemon=True).start()
    return child


def test_a_leftover_hangtest_is_killed_by_the_identity_recorded_at_spawn(hangtest_binary, tmp_path):
    child = start_hangtest(hangtest_binary, tmp_path / "run-1")
    try:
        identity = PLATFORM.process_identity(child.pid)
        assert identity, f"no identity for the running hangtest {child.pid}"
        outcome = PLATFORM.kill_leftover(child.pid, identity, timeout_s=10)
        assert outcome is not None, "a running hangtest with its identity was not found"
        assert outcome.gone, outcome.detail
        child.popen.wait(timeout=5)  # reaped here only because this test is its parent
        assert PLATFORM.process_identity(child.pid) is None
    finally:
        PLATFORM.kill_tree(child, 10)


def test_a_process_that_reused_the_pid_is_left_alone(hangtest_binary, tmp_path):
    child = start_hangtest(hangtest_binary, tmp_path / "run-1")
    try:
        identity = PLATFORM.process_identity(child.pid)
        assert PLATFORM.kill_leftover(child.pid, f"{identity}-earlier", timeout_s=1) is None
        assert child.popen.poll() is None, "a process with another identity was killed"
        assert PLATFORM.process_identity(child.pid) == identity
    finally:
        PLATFORM.kill_tree(child, 10)


def test_a_process_that_is_gone_has_no_identity_and_nothing_to_kill(hangtest_binary, tmp_path):
    child = start_hangtest(hangtest_binary, tmp_path / "run-1")
    identity = PLATFORM.process_identity(child.pid)
    assert identity is not None
    assert PLATFORM.kill_tree(child, 10).gone
    assert PLATFORM.process_identity(child.pid) is None
    assert PLATFORM.kill_leftover(child.pid, identity, timeout_s=1) is None


def marker(run_id: int = 7) -> RunMarker:
    return RunMarker(
        run_id=run_id,
        job_id=1,
        attempt=2,
        lease_token="lease-secret-0123456789",
        leased_at=datetime.now(UTC),
        pid=1234,
        process_identity="boot:42",
    )


def test_a_marker_keeps_its_lease_token_out_of_logs_and_other_users(tmp_path):
    markers = RunMarkers(tmp_path)
    markers.save(marker())
    assert "lease-secret" not in repr(markers.pending())
    (path,) = (tmp_path / "inflight").glob("run-*.json")
    if sys.platform != "win32":  # Windows: the install's ACLs close work\ instead
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_write_cut_short_by_a_crash_leaves_the_last_whole_marker(tmp_path):
    markers = RunMarkers(tmp_path)
    markers.save(marker())
    # A crash mid-write leaves only the temporary file, half written.
    (tmp_path / "inflight" / "run-7.json.tmp").write_text('{"run_id": 7, "lease_tok')
    (whole,) = markers.pending()
    assert (whole.run_id, whole.lease_token, whole.pid) == (7, "lease-secret-0123456789", 1234)
    assert markers.run_ids() == {7}


def test_a_damaged_marker_is_skipped_but_its_run_folder_is_kept(tmp_path):
    markers = RunMarkers(tmp_path)
    markers.save(marker(7))
    (tmp_path / "inflight" / "run-8.json").write_text("not json")
    assert [m.run_id for m in markers.pending()] == [7]
    assert markers.run_ids() == {7, 8}


def test_done_forgets_the_marker(tmp_path):
    markers = RunMarkers(tmp_path)
    markers.save(marker(7))
    markers.done(7)
    assert markers.pending() == []
    assert markers.get(7) is None
