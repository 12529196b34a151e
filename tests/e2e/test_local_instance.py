"""`reprofarm up` on a fresh data directory, then the submit and stats
contract against it, and the dashboard in a real headless Chromium."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.chromium import launch
from tests.e2e.farm import free_port

BIN = Path(sys.executable).parent


@pytest.fixture
def up(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    cwd = tmp_path / "cwd"  # must stay empty: all state goes to the data dir
    cwd.mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("REPROFARM_")
    }  # the embedded default, nothing external
    process = subprocess.Popen(
        [str(BIN / "reprofarm"), "up", "--port", str(port), "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        start_new_session=True,
        cwd=cwd,
    )
    first = process.stdout.readline()
    assert "reprofarm is up" in first, first + (process.stdout.read() if process.poll() else "")
    yield {"port": port, "data": data, "env": env, "banner": first}
    os.killpg(process.pid, signal.SIGINT)
    rest = process.communicate(timeout=60)[0]
    logs = data / "logs"
    for log in sorted(logs.glob("*.log")):
        print(f"===== {log.name}\n{log.read_text(errors='replace')[-2000:]}")
    assert "stopped" in rest
    assert sorted(p.name for p in cwd.iterdir()) == [], "up wrote into its working directory"


def cli(up, *args):
    return subprocess.run(
        [str(BIN / "reprofarm"), *args, "--data-dir", str(up["data"])],
        capture_output=True,
        text=True,
        env=up["env"],
        timeout=600,
    )


def test_up_then_submit_and_stats_contract(up):
    done = cli(
        up,
        "submit",
        "--scenario",
        "control-deadlock",
        "--cpus",
        "1,2",
        "--affinity",
        "compact,spread",
        "--repeats",
        "1",
        "--duration",
        "15s",
        "--stall-timeout",
        "3s",
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "done"
    assert set(report["runs"]) == {
        "passed",
        "hung",
        "failed",
        "error",
        "lost",
        "cancelled",
        "expired",
    }
    assert report["runs"]["hung"] == 4
    stats = cli(up, "stats", "--json", "--group-by", "hardware,cpus,affinity,go_version,scenario")
    assert stats.returncode == 0, stats.stderr
    rows = json.loads(stats.stdout)
    assert len(rows) == 4
    for row in rows:
        assert {
            "hardware",
            "cpus",
            "affinity",
            "go_version",
            "scenario",
            "runs",
            "hangs",
            "hit_rate",
            "ci95_low",
            "ci95_high",
        } <= set(row)
        assert (row["runs"], row["hangs"]) == (1, 1)
    # The api still refuses a request without a valid token.
    bad = subprocess.run(
        [
            str(BIN / "reprofarm"),
            "stats",
            "--json",
            "--api",
            f"http://127.0.0.1:{up['port']}",
            "--token",
            "rf_wrong",
        ],
        capture_output=True,
        text=True,
        env=up["env"],
    )
    assert bad.returncode == 2
    assert "HTTP 401" in bad.stderr


@pytest.mark.needs("chromium")
def test_dashboard_shows_rates_and_jobs_in_chromium(up):
    from playwright.sync_api import sync_playwright

    done = cli(
        up,
        "submit",
        "--scenario",
        "control-deadlock",
        "--duration",
        "10s",
        "--stall-timeout",
        "2s",
        "--process-dumps",
        "0",
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    probe = subprocess.run(
        [str(BIN / "reprofarm"), "probe", "--json"], capture_output=True, text=True, check=True
    )
    machine = json.loads(probe.stdout)
    link = up["banner"].split("dashboard ", 1)[1].split()[0]
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        page.goto(link)
        page.wait_for_selector("#rates tbody tr", timeout=60_000)
        page.wait_for_selector("#jobs tbody tr", timeout=60_000)
        row = page.inner_text("#rates tbody tr")
        hardware = row.split("\t")[0]
        assert hardware.startswith(f"{machine['cpu_model']} ({machine['arch']}, "), row
        assert f"{machine['logical_cpus']} CPUs" in hardware, row
        assert "100.0%" in row
        assert page.locator("#rates .whisker").count() == 1
        job = page.inner_text("#jobs tbody tr")
        assert "control-deadlock" in job
        assert "done" in job
        page.screenshot(
            path=str(Path(os.environ.get("REPROFARM_SCREENSHOT", up["data"] / "dashboard.png")))
        )
        browser.close()
