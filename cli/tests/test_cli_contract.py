"""The documented command-line contract, through the installed commands."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from reprofarm_agent.platform import current_platform
from reprofarm_agent.settings import AgentSettings

BIN = Path(sys.executable).parent


def reprofarm(*args, env=None, command="reprofarm"):
    return subprocess.run(
        [str(BIN / command), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_probe_json_has_the_contract_fields():
    done = reprofarm("probe", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    for key in (
        "os",
        "os_version",
        "arch",
        "cpu_model",
        "logical_cpus",
        "physical_cores",
        "hypervisor",
        "fingerprint",
    ):
        assert key in info, key


def test_agent_entry_points_answer_too():
    assert reprofarm("probe", "--json", command="reprofarm-agent").returncode == 0
    done = subprocess.run(
        [sys.executable, "-m", "reprofarm_agent", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert "probe" in done.stdout


def test_build_json_prints_the_manifest(build_cache):
    done = reprofarm(
        "build",
        "--target",
        "windows/arm64",
        "--json",
        env={"REPROFARM_CACHE_DIR": str(build_cache)},
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["target"] == "windows/arm64"
    assert manifest["go_version"].startswith("go1.27")
    assert manifest["fix_present"] is False
    assert len(manifest["sha256"]) == 64
    assert Path(manifest["path"]).exists()


def test_run_json_prints_only_json_with_runs_and_summary(hangtest_binary, tmp_path):
    done = reprofarm(
        "run",
        "--binary",
        str(hangtest_binary),
        "--cpus",
        "1",
        "--affinity",
        "compact",
        "--workers",
        "2",
        "--duration",
        "1s",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (run,) = report["runs"]
    assert run["status"] == "passed"
    assert len(run["cpu_set"]) == 1
    assert run["gomaxprocs"] == 1
    assert run["iterations"] > 0
    assert run["duration_s"] > 0
    assert {a["kind"] for a in run["artifacts"]} == {"stdout"}
    assert set(report["summary"]) >= {"runs", "hangs", "hit_rate", "ci95_low", "ci95_high"}
    assert (tmp_path / "report.json").exists()
    assert "run 1/1" in done.stderr


@pytest.mark.needs("gcore")  # asserts core dumps
def test_control_deadlock_runs_hang_with_dumps_and_cores(hangtest_binary, tmp_path):
    done = reprofarm(
        "run",
        "--binary",
        str(hangtest_binary),
        "--scenario",
        "control-deadlock",
        "--repeat",
        "3",
        "--duration",
        "20s",
        "--stall-timeout",
        "3s",
        "--out",
        str(tmp_path),
        "--json",
        env={"REPROFARM_DUMP_INTERVAL_S": "1"},
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["summary"]["runs"] == 3
    assert report["summary"]["hangs"] == 3
    assert report["summary"]["ci95_high"] == 1.0
    for run in report["runs"]:
        assert run["status"] == "hung"
        kinds = [a["kind"] for a in run["artifacts"]]
        assert kinds.count("core") == 2
        assert "goroutines" in kinds
        dump = next(a for a in run["artifacts"] if a["kind"] == "goroutines")
        assert "lockRightThenLeft" in Path(dump["path"]).read_text()


# What this machine can do, so the impossible requests below are impossible
# here whatever its size (a 32-CPU runner has a CPU 20).
USABLE = current_platform(AgentSettings()).probe().cpus
TOO_MANY = len(USABLE) + 1
UNUSABLE = max(c.index for c in USABLE if c.group == 0) + 1
HYBRID = len({c.efficiency_class for c in USABLE}) > 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--cpus", str(TOO_MANY)],
            f"error: cpus: asked for {TOO_MANY} CPUs, this machine has {len(USABLE)} CPUs",
        ),
        pytest.param(
            ["--affinity", "ecores"],
            "error: affinity ecores: this machine has no efficiency",
            marks=pytest.mark.skipif(HYBRID, reason="this machine has efficiency cores"),
        ),
        (
            ["--affinity", f"mask:{1 << UNUSABLE:#x}"],
            f"error: affinity mask: CPU {UNUSABLE} is not usable",
        ),
        (["--affinity", "diagonal"], "error: affinity: 'diagonal' is not one of compact"),
        (["--duration", "soon"], "error: duration: 'soon' is not a duration"),
        (["--scenario", "meltdown"], "error: scenario: 'meltdown' is not one of"),
        (["--binary", "/no/such/hangtest"], "error: binary: /no/such/hangtest is not a file"),
        (["--go", "1.x"], "error: go: '1.x' is neither a Go version"),
    ],
)
def test_impossible_requests_are_refused_with_field_and_reason(args, message, tmp_path):
    done = reprofarm("run", *args, "--out", str(tmp_path / "out"), "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr
    assert not (tmp_path / "out").exists()
