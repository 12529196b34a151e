"""Check hangtest's Windows build under Wine, for every supported Go minor.

For each Go version: build hangtest for windows/amd64 (the agent's own
content-addressed build), run it under Wine in the test bed's root and check
what docs/hangtest.md promises: the hang scenarios end ``passed``, the control
deadlock stalls with a goroutine dump, the events validate against the
protocol models, the ``cpu_set`` is the affinity Wine was started with; then
run hangtest's own ``go test`` binary under Wine.

Run by ``check-hangtest.sh`` (which prepares the root and always unmounts it),
or by hand once the root is prepared::

    uv run python agent-windows/wine/check_hangtest.py --go 1.21,1.27 --duration 2s

Exits 1 if any check failed; prints one line per check and a summary table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

from reprofarm_agent.build import build_hangtest, go_env, hangtest_source_dir
from reprofarm_agent.errors import BuildError
from reprofarm_agent.settings import AgentSettings
from reprofarm_agent.toolchains import Toolchain, resolve_toolchain
from reprofarm_protocol.errors import ProtocolError
from reprofarm_protocol.hangtest_events import (
    DoneEvent,
    ErrorEvent,
    HangtestEvent,
    StallEvent,
    StartEvent,
    parse_event,
)

HERE = Path(__file__).resolve().parent
GO_MINORS = ("1.21", "1.22", "1.23", "1.24", "1.25", "1.26", "1.27")
TARGET = "windows/amd64"
# Where the checks work, inside the root; Wine shows the root's / as Z:.
WORK_IN_ROOT = "/work/check"


def wine_root() -> Path:
    return Path(os.environ.get("REPROFARM_WINE_ROOT", "/var/cache/reprofarm/wine-trixie"))


def windows_path(path_in_root: str) -> str:
    return "Z:" + path_in_root.replace("/", "\\")


def host_path(windows: str) -> Path:
    """A Z:\\ path that hangtest reported, as a path on the host."""
    parts = PureWindowsPath(windows).parts
    if not parts or parts[0].upper() != "Z:\\":
        raise ValueError(f"not a path on Wine's Z: drive: {windows}")
    return wine_root().joinpath(*parts[1:])


@dataclass
class Result:
    go: str
    check: str
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class WineRun:
    exit_code: int | None  # None: killed after the timeout
    events: list[HangtestEvent]
    problems: list[str]
    stdout: str
    stderr: str


def run_in_root(
    args: Sequence[str], timeout_s: float, cpus: str | None = None
) -> subprocess.CompletedProcess[str] | None:
    """Run a command in the root (run-in-root.sh execs it, so a timeout kills
    the Wine process itself); None if it outlived the timeout."""
    cmd = [str(HERE / "run-in-root.sh"), *args]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return None


def run_hangtest(
    exe_in_root: str, args: Sequence[str], timeout_s: float, cpus: str | None = None
) -> WineRun:
    done = run_in_root(["wine", exe_in_root, *args], timeout_s, cpus)
    if done is None:
        return WineRun(None, [], [f"still running after {timeout_s:.0f}s: killed"], "", "")
    events: list[HangtestEvent] = []
    problems: list[str] = []
    for n, line in enumerate(done.stdout.splitlines(), 1):
        try:
            event = parse_event(line)
        except ProtocolError as exc:
            problems.append(f"stdout line {n}: {exc}: {line[:120]!r}")
            continue
        if event is not None:
            events.append(event)
    return WineRun(done.returncode, events, problems, done.stdout, done.stderr)


def check_envelope(
    run: WineRun, toolchain: Toolchain, want_exit: int, want_reason: str
) -> list[str]:
    """What every run must show: start first, done last, exit codes that agree."""
    problems = list(run.problems)
    if run.exit_code != want_exit:
        tail = " | ".join(run.stderr.strip().splitlines()[-3:])
        problems.append(f"exit code {run.exit_code}, want {want_exit} (stderr: {tail or '-'})")
    if not run.events or not isinstance(run.events[0], StartEvent):
        return [*problems, "the first event is not start"]
    start = run.events[0]
    if (start.goos, start.goarch, start.go_version) != ("windows", "amd64", toolchain.version):
        problems.append(
            f"start says {start.goos}/{start.goarch} {start.go_version}, "
            f"want windows/amd64 {toolchain.version}"
        )
    done = run.events[-1]
    if not isinstance(done, DoneEvent):
        return [*problems, f"the last event is {run.events[-1].event}, not done"]
    if done.reason != want_reason or done.exit_code != want_exit:
        problems.append(
            f"done says {done.reason} exit {done.exit_code}, want {want_reason} exit {want_exit}"
        )
    return problems


def check_passes(
    exe: str, toolchain: Toolchain, scenario: str, duration: str, cpus: list[int]
) -> list[str]:
    """A hang scenario for a short duration must end passed, with no error event."""
    run = run_hangtest(
        exe,
        ["-scenario", scenario, "-iterations", "0", "-duration", duration, "-stall-timeout", "20s"],
        timeout_s=120,
    )
    problems = check_envelope(run, toolchain, want_exit=0, want_reason="completed")
    errors = [e for e in run.events if isinstance(e, ErrorEvent)]
    if errors:
        first = errors[0]
        problems.append(
            f"{len(errors)} error events; first: worker {first.worker} "
            f"iteration {first.iteration}: {first.message}"
        )
    done = run.events[-1] if run.events else None
    if isinstance(done, DoneEvent) and done.iterations == 0:
        problems.append("no iteration finished")
    start = run.events[0] if run.events else None
    if isinstance(start, StartEvent) and start.cpu_set != cpus:
        problems.append(f"cpu_set {start.cpu_set}, want the host affinity {cpus}")
    return problems


def check_stall(exe: str, toolchain: Toolchain, work: str) -> list[str]:
    """The control must stall and leave its goroutine dump (dump-and-exit: exit 3)."""
    dump_dir = f"{work}/dumps"
    (wine_root() / dump_dir.lstrip("/")).mkdir(parents=True, exist_ok=True)
    args = "-scenario control-deadlock -control-chance 1 -workers 2 -iterations 1000"
    args += " -stall-timeout 1s -on-stall dump-and-exit"
    run = run_hangtest(exe, [*args.split(), "-dump-dir", windows_path(dump_dir)], timeout_s=90)
    problems = check_envelope(run, toolchain, want_exit=3, want_reason="stalled")
    stalls = [e for e in run.events if isinstance(e, StallEvent)]
    if len(stalls) != 1:
        return [*problems, f"{len(stalls)} stall events, want 1"]
    stall = stalls[0]
    if stall.dump_error or not stall.workers:
        problems.append(f"stall: dump_error {stall.dump_error!r}, workers {stall.workers}")
    dump = host_path(stall.goroutine_dump)
    try:
        text = dump.read_text(errors="replace")
    except OSError as exc:
        return [*problems, f"goroutine dump {stall.goroutine_dump}: {exc}"]
    for frame in ("main.lockLeftThenRight(", "main.lockRightThenLeft(", "[sync.Mutex.Lock"):
        if frame not in text:
            problems.append(f"goroutine dump {dump.name} lacks {frame}")
    return problems


def check_affinity(exe: str, toolchain: Toolchain, cpu: int) -> list[str]:
    """Started under taskset on one CPU, hangtest must report exactly that CPU."""
    run = run_hangtest(
        exe,
        ["-scenario", "pipe-close-race", "-workers", "2", "-iterations", "50"],
        timeout_s=60,
        cpus=str(cpu),
    )
    problems = check_envelope(run, toolchain, want_exit=0, want_reason="completed")
    start = run.events[0] if run.events else None
    if isinstance(start, StartEvent) and (start.cpu_set, start.num_cpu) != ([cpu], 1):
        problems.append(
            f"taskset -c {cpu}: cpu_set {start.cpu_set} num_cpu {start.num_cpu}, want [{cpu}] and 1"
        )
    return problems


def check_go_test(toolchain: Toolchain, cache_dir: Path, work: str) -> list[str]:
    """hangtest's own tests, compiled for Windows and run under Wine."""
    out = wine_root() / work.lstrip("/") / "hangtest.test.exe"
    built = subprocess.run(
        [str(toolchain.go), "test", "-c", "-trimpath", "-o", str(out), "."],
        cwd=hangtest_source_dir(),
        env=go_env(toolchain, cache_dir, TARGET),
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        return [f"go test -c failed: {built.stderr.strip()[-500:]}"]
    done = run_in_root(["wine", f"{work}/hangtest.test.exe", "-test.count=1", "-test.v"], 180)
    if done is None:
        return ["the test binary ran past 180s: killed"]
    failed = [ln.strip() for ln in done.stdout.splitlines() if ln.startswith("--- FAIL")]
    passed = sum(ln.startswith("--- PASS") for ln in done.stdout.splitlines())
    if done.returncode != 0 or failed or passed == 0:
        tail = " | ".join(done.stdout.strip().splitlines()[-8:])
        return [f"go test exit {done.returncode}, {passed} passed, failed: {failed} ({tail})"]
    return []


def timed(go: str, name: str, check: Callable[..., list[str]], *args: object) -> Result:
    started = time.monotonic()
    result = Result(go, name, check(*args), time.monotonic() - started)
    mark = "ok  " if result.ok else "FAIL"
    print(f"{mark} {go:<10} {name:<18} {result.seconds:5.1f}s", flush=True)
    for p in result.problems:
        print(f"       {p}", flush=True)
    return result


def toolchain_for(minor: str, cache_dir: Path) -> Toolchain:
    """The newest patch of ``minor`` already installed in the agent's cache, or
    a fresh install of the newest one. resolve_toolchain would ask the package
    index about a two-part version every time (seconds each); a CI step on a
    machine that keeps its cache reuses what it has."""
    installed = [
        goroot
        for goroot in (cache_dir / "toolchains").glob(f"go{minor}.*/go")
        if (goroot / "VERSION").exists()
    ]
    if installed:
        newest = max(installed, key=lambda g: int(g.parent.name.rsplit(".", 1)[-1]))
        return resolve_toolchain(str(newest), cache_dir)
    return resolve_toolchain(minor, cache_dir)


def check_version(
    minor: str, settings: AgentSettings, duration: str, host_cpus: list[int]
) -> list[Result]:
    try:
        toolchain = toolchain_for(minor, settings.cache_dir)
        manifest = build_hangtest(toolchain, TARGET, settings.cache_dir)
    except BuildError as exc:
        return [Result(minor, "build", [str(exc)])]
    go = toolchain.version
    work = f"{WORK_IN_ROOT}/{go}"
    work_dir = wine_root() / work.lstrip("/")
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    shutil.copy2(manifest.path, work_dir / "hangtest.exe")
    exe = f"{work}/hangtest.exe"
    results = [
        timed(go, scenario, check_passes, exe, toolchain, scenario, duration, host_cpus)
        for scenario in ("pipe-close-race", "socket-pipe-mix")
    ]
    results.append(timed(go, "control-deadlock", check_stall, exe, toolchain, work))
    if len(host_cpus) > 1:
        results.append(
            timed(go, "cpu_set (taskset)", check_affinity, exe, toolchain, host_cpus[-1])
        )
    results.append(timed(go, "go test", check_go_test, toolchain, settings.cache_dir, work))
    return results


def summary(results: list[Result]) -> str:
    checks = list(dict.fromkeys(r.check for r in results))
    versions = list(dict.fromkeys(r.go for r in results))
    width = max(len(c) for c in checks)
    lines = [f"{'check':<{width}}  " + "  ".join(f"{v:<10}" for v in versions)]
    for c in checks:
        cells = []
        for v in versions:
            r = next((r for r in results if r.go == v and r.check == c), None)
            cells.append(f"{'-' if r is None else ('passed' if r.ok else 'FAILED'):<10}")
        lines.append(f"{c:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--go", default=",".join(GO_MINORS), help="Go minors, comma-separated")
    parser.add_argument("--duration", default="2s", help="per hang scenario (a Go duration)")
    args = parser.parse_args(argv)
    if not (wine_root() / ".reprofarm-wine-root-ready").exists():
        print(f"{wine_root()} is not prepared: run prepare-root.sh first", file=sys.stderr)
        return 1
    settings = AgentSettings()
    host_cpus = sorted(os.sched_getaffinity(0))
    started = time.monotonic()
    results: list[Result] = []
    for minor in args.go.split(","):
        results.extend(check_version(minor.strip(), settings, args.duration, host_cpus))
    print()
    print(summary(results))
    failed = [r for r in results if not r.ok]
    print(f"\nwine: {len(results) - len(failed)} passed, {len(failed)} failed")
    print(f"wine checks took {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
