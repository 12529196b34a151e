"""How fast is the goroutine-dump analyzer on a big dump? Builds a ~10 MB stall dump of
10,000 goroutines out of goroutine blocks copied from the real corpus
(analyzer/tests/corpus/goroutines, ids renumbered so each stays unique), then parses and
classifies it several times and prints the median time and the peak memory.

    uv run python bench/goroutine_analysis.py [--goroutines 10000] [--bytes 10000000] [--rounds 5]
    uv run python bench/goroutine_analysis.py --compare 3f3805a   # this tree against a commit
    uv run python bench/goroutine_analysis.py --dump big.txt      # a dump of your own

Target (issue "The analyzer"): under 1 s on the 2-core development machine. The last line
is one JSON object: {"bytes":..,"goroutines":..,"median_ms":..,"peak_mb":..}.

``--compare REV`` times this tree against the analyzer and protocol packages of a git
revision (exported with ``git archive`` into a temporary folder, run in a child with that
folder first on ``PYTHONPATH``) in alternating rounds (``--rounds`` of them: each times
both sides, one child each, the order swapped every round; each child's figure is the
median of ``--per-child`` timings of one dump built once) and prints the median of the
per-round CPU ratios with its spread: issue 17 allows the tolerant reader at most 20% more
on well-formed dumps than the reader before it. One ratio of two medians taken minutes
apart, as before, moved with whatever the neighbours did meanwhile.

    uv run python bench/goroutine_analysis.py --compare 3f3805a --rounds 8
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from reprofarm_analyzer.analysis import analyze_goroutines
from reprofarm_analyzer.goroutines import parse_goroutine_dumps

CORPUS = Path(__file__).parent.parent / "analyzer" / "tests" / "corpus" / "goroutines"
_HEADER = re.compile(r"^goroutine \d+", re.MULTILINE)
_MARKUP = re.compile(r"<br\s*/?>|</(?:pre|code|span|div)>", re.IGNORECASE)
"""A block copied from a web page (the corpus keeps one, with a ``<br/>`` inside a frame):
one such block would make the whole 10 MB dump a page's source, which is not the
well-formed dump this benchmark is about."""


def corpus_blocks() -> list[str]:
    """Whole goroutine blocks (header to blank line) of every corpus dump without a line
    prefix, skipping goroutines the dump cut short and blocks with a page's markup."""
    blocks = []
    for path in sorted(CORPUS.glob("*.txt")):
        text = path.read_text()
        for dump in parse_goroutine_dumps(text):
            lines = text.split("\n")
            for g in dump.goroutines:
                if g.truncated or not lines[g.line - 1].startswith("goroutine "):
                    continue
                end = g.line
                while end < len(lines) and lines[end].strip():
                    end += 1
                block = "\n".join(lines[g.line - 1 : end])
                if _MARKUP.search(block) is None:
                    blocks.append(block)
    return blocks


def build_dump(goroutines: int, target_bytes: int) -> str:
    """``goroutines`` blocks averaging ``target_bytes / goroutines`` bytes: while the dump
    is below that average, the next of the big blocks, else the next of the small ones."""
    blocks = sorted(set(corpus_blocks()), key=len, reverse=True)
    mean_wanted = target_bytes / goroutines
    big = [b for b in blocks if len(b) >= mean_wanted] or blocks[:1]
    small = [b for b in blocks if len(b) < mean_wanted] or blocks[-1:]
    parts = ["# hangtest goroutine dump\n# reason: stall\n"]
    size = 0
    picks = {"big": 0, "small": 0}
    for n in range(goroutines):
        kind, pool = ("big", big) if size < mean_wanted * n else ("small", small)
        block = pool[picks[kind] % len(pool)]
        picks[kind] += 1
        parts.append(_HEADER.sub(f"goroutine {n + 1}", block, count=1))
        size += len(parts[-1]) + 2
    return "\n\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goroutines", type=int, default=10_000)
    parser.add_argument("--bytes", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare", metavar="REV", help="also time the analyzer of this commit")
    parser.add_argument(
        "--per-child", type=int, default=3, help="--compare: timings per child (their median)"
    )
    parser.add_argument("--dump", type=Path, help="time this dump instead of building one")
    args = parser.parse_args()
    if args.compare:
        _compare(args)
        return

    text = args.dump.read_text() if args.dump else build_dump(args.goroutines, args.bytes)
    size = len(text.encode())
    wall, cpu = [], []
    for _ in range(args.rounds):
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        analysis = analyze_goroutines(text)
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    tracemalloc.start()
    analyze_goroutines(text)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    median = statistics.median(wall)
    load = os.getloadavg()[0]
    print(f"dump: {size / 1e6:.1f} MB, {analysis.goroutines} goroutines, {analysis.label.value}")
    print(
        f"parse+classify: median {median:.0f} ms wall (min {min(wall):.0f}, max {max(wall):.0f}),"
        f" {statistics.median(cpu):.0f} ms CPU, over {args.rounds} rounds; target < 1000 ms"
    )
    # On a shared 2-core machine other work steals the CPU: CPU time is the analyzer's own
    # cost, wall time what a caller waited. The load average says how noisy wall time was.
    print(f"load average (1 min) during the run: {load:.1f}")
    print(f"peak memory while analysing (tracemalloc): {peak / 1e6:.1f} MB")
    result = {
        "bytes": size,
        "goroutines": analysis.goroutines,
        "median_ms": round(median, 1),
        "peak_mb": round(peak / 1e6, 1),
        "cpu_median_ms": round(statistics.median(cpu), 1),
        "load_1m": round(load, 1),
    }
    print(json.dumps(result))


def _compare(args: argparse.Namespace) -> None:
    """This tree against REV in alternating rounds: each round times both, one child
    process each, the order swapped every round (A B, B A, ...), so a neighbour's burst or
    a slow drift of the machine weighs on both sides alike. Both read the same dump, built
    once here. The verdict is the median of the per-round ratios, with their spread."""
    root = Path(__file__).parent.parent
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", args.compare, "analyzer", "protocol"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        dump = Path(tmp) / "dump.txt"
        dump.write_text(build_dump(args.goroutines, args.bytes))
        child = [sys.executable, __file__, "--dump", str(dump), "--rounds", str(args.per_child)]
        sides = {
            "this tree": dict(os.environ),
            args.compare: {**os.environ, "PYTHONPATH": f"{tmp}/analyzer{os.pathsep}{tmp}/protocol"},
        }
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        ratios = []
        for n in range(args.rounds):
            order = list(sides) if n % 2 == 0 else list(sides)[::-1]
            for name in order:
                out = subprocess.run(
                    child, env=sides[name], check=True, capture_output=True, text=True
                ).stdout
                cpu[name].append(json.loads(out.strip().splitlines()[-1])["cpu_median_ms"])
            new, old = cpu["this tree"][-1], cpu[args.compare][-1]
            ratios.append(new / old)
            print(
                f"round {n + 1} ({' then '.join(order)}): this tree {new:.0f} ms CPU,"
                f" {args.compare} {old:.0f} ms, ratio {new / old:.3f}"
            )
    ratio = statistics.median(ratios)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratio] * 3
    print(
        f"CPU ratio this tree / {args.compare}: median {ratio:.3f} over {len(ratios)} rounds"
        f" (min {min(ratios):.3f}, max {max(ratios):.3f},"
        f" quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}); allowed 1.20;"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    summary = {
        "cpu_ms": round(statistics.median(cpu["this tree"]), 1),
        "baseline_cpu_ms": round(statistics.median(cpu[args.compare]), 1),
        "ratio": round(ratio, 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "rounds": len(ratios),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
