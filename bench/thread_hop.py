"""What one worker-thread hop costs, against the api's CPU per request.

The hot routes run their database work in a worker thread (one hop each since the
lease, heartbeat and results routes run their transaction through
``DatabaseSlots.run``); issue 18 asks for no hop, or for a measure that the hop is not
the cost. This measures, in one process, the CPU of N awaits of
``run_in_threadpool(fn)`` against N direct calls of the same ``fn`` from a coroutine,
alternating rounds, and prints the hop's CPU in microseconds and as a share of the
api's CPU per request (pass the figure agents_load.py printed):

    uv run python bench/thread_hop.py --api-cpu-ms 5.4
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from fastapi.concurrency import run_in_threadpool


def _work() -> int:
    return sum(range(20))


async def _direct(n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        _work()
        await asyncio.sleep(0)
    return time.process_time() - start


async def _hopped(n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        await run_in_threadpool(_work)
    return time.process_time() - start


async def _main(n: int, rounds: int) -> list[float]:
    await _hopped(100)  # start the pool's threads
    per_hop = []
    for _ in range(rounds):
        direct = await _direct(n)
        hopped = await _hopped(n)
        per_hop.append((hopped - direct) / n * 1e6)
    return per_hop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hops", type=int, default=20_000, help="hops per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--api-cpu-ms", type=float, help="api CPU per request, ms (agents_load.py)")
    args = p.parse_args()
    per_hop = asyncio.run(_main(args.hops, args.rounds))
    median = statistics.median(per_hop)
    rounds = ", ".join(f"{x:.0f}" for x in per_hop)
    print(f"one thread hop: {median:.0f} us of CPU (median of {args.rounds} rounds: {rounds})")
    if args.api_cpu_ms:
        share = median / 1000 / args.api_cpu_ms
        print(f"= {share:.1%} of {args.api_cpu_ms} ms of api CPU per request")


if __name__ == "__main__":
    main()
