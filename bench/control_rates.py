"""Measures how often control-deadlock really deadlocks, per iteration, for a
few -control-chance values and GOMAXPROCS settings, and prints a table.

    uv run python bench/control_rates.py [--rounds 3]

Each round runs hangtest with -on-stall dump-and-exit. A hung worker ends its
geometric trial; the maximum-likelihood hang probability per iteration is
hung workers / (finished iterations + hung workers). The ratio to the chance is
how often an inverted lock order actually loses the race.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

from native_build import native_hangtest
from reprofarm_agent.platform import current_platform
from reprofarm_agent.settings import AgentSettings


def one_round(binary: Path, chance: float, procs: int, seconds: int) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as dump_dir:
        out = subprocess.run(
            [
                str(binary),
                "-scenario",
                "control-deadlock",
                "-workers",
                "10",
                "-iterations",
                "0",
                "-duration",
                f"{seconds}s",
                "-stall-timeout",
                "1s",
                "-on-stall",
                "dump-and-exit",
                "-control-chance",
                str(chance),
                "-dump-dir",
                dump_dir,
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "GOMAXPROCS": str(procs)},
        )
    events = [json.loads(line) for line in out.stdout.splitlines()]
    done = events[-1]
    stall = next((e for e in events if e["event"] == "stall"), None)
    hung = len(stall["workers"]) if stall else 0
    return hung, done["iterations"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    facts = current_platform(AgentSettings()).probe()
    binary = native_hangtest()
    print(
        "| -control-chance | GOMAXPROCS | rounds hung | iterations "
        "| hangs/iteration | hangs/inversion |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for chance in (1e-3, 1e-5, 1e-6, 1e-7):
        for procs in (1, len(facts.cpus)):
            hung = iterations = rounds_hung = 0
            for _ in range(args.rounds):
                h, n = one_round(binary, chance, procs, args.seconds)
                hung += h
                iterations += n
                rounds_hung += h > 0
            p = hung / (iterations + hung) if iterations + hung else 0.0
            print(
                f"| {chance:g} | {procs} | {rounds_hung}/{args.rounds} | {iterations} "
                f"| {p:.2e} | {p / chance:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
