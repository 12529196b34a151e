"""Does watching hangtest slow it down? Runs the same hangtest configuration
bare and under `reprofarm run`, alternating, and prints iterations per second
of each and their ratio (target: at least 0.98).

    uv run python bench/runner_overhead.py [--seconds 10] [--rounds 3]

Both sides count iterations over hangtest's own elapsed time (its `done`
event), so start-up and the agent's build step are not counted. On 2 cores the
rate varies by about 8% from run to run, more than the 2% being looked for, so
the benchmark also measures the bound that noise cannot hide: the CPU time the
agent itself spends watching a run (in-process `run_once`, `time.process_time`,
children excluded), as a share of the CPU time the machine had meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from native_build import native_hangtest
from reprofarm_agent.placement import place
from reprofarm_agent.platform import current_platform
from reprofarm_agent.runner import RunSpec, run_once
from reprofarm_agent.settings import AgentSettings


def done_rate(lines: list[str]) -> float:
    done = next(json.loads(line) for line in reversed(lines) if '"event":"done"' in line)
    return done["iterations"] / done["elapsed_s"]


def bare(binary: Path, seconds: int, cpus: int) -> float:
    out = subprocess.run(
        [
            str(binary),
            "-scenario",
            "pipe-close-race",
            "-workers",
            "10",
            "-iterations",
            "0",
            "-duration",
            f"{seconds}s",
            "-dump-dir",
            tempfile.gettempdir(),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GOMAXPROCS": str(cpus)},
    )
    return done_rate(out.stdout.splitlines())


def under_agent(binary: Path, seconds: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [
                str(Path(sys.executable).parent / "reprofarm"),
                "run",
                "--binary",
                str(binary),
                "--scenario",
                "pipe-close-race",
                "--workers",
                "10",
                "--duration",
                f"{seconds}s",
                "--out",
                out,
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return done_rate((Path(out) / "run-001" / "stdout.jsonl").read_text().splitlines())


def agent_cpu_share(binary: Path, seconds: int) -> tuple[float, float]:
    """(agent CPU seconds, share of all CPUs) while it watches one run."""
    platform = current_platform(AgentSettings())
    placement = place(platform.probe().cpus, None, "all")
    spec = RunSpec(
        binary=binary,
        scenario="pipe-close-race",
        placement=placement,
        gomaxprocs=len(placement.cpus),
        iterations=0,
        duration_s=float(seconds),
    )
    with tempfile.TemporaryDirectory() as out:
        cpu_before, wall_before = time.process_time(), time.monotonic()
        run_once(spec, Path(out), platform, AgentSettings())
        cpu = time.process_time() - cpu_before
        wall = time.monotonic() - wall_before
    return cpu, cpu / (wall * len(placement.cpus))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    facts = current_platform(AgentSettings()).probe()
    binary = native_hangtest()
    bare_rates, agent_rates = [], []
    for i in range(args.rounds):
        bare_rates.append(bare(binary, args.seconds, len(facts.cpus)))
        agent_rates.append(under_agent(binary, args.seconds))
        print(
            f"round {i + 1}: bare {bare_rates[-1]:.1f} it/s, "
            f"under reprofarm run {agent_rates[-1]:.1f} it/s",
            flush=True,
        )
    b, a = statistics.mean(bare_rates), statistics.mean(agent_rates)
    print(f"bare: {b:.1f} it/s (sd {statistics.pstdev(bare_rates):.1f})")
    print(f"under reprofarm run: {a:.1f} it/s (sd {statistics.pstdev(agent_rates):.1f})")
    median_ratio = statistics.median(agent_rates) / statistics.median(bare_rates)
    cpu, share = agent_cpu_share(binary, args.seconds)
    print(
        f"agent CPU while watching a {args.seconds}s run: {cpu:.3f}s = {share:.2%} of the machine"
    )
    print(f"ratio of means: {a / b:.3f}, of medians: {median_ratio:.3f} (target >= 0.98)")


if __name__ == "__main__":
    main()
