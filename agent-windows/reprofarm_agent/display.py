"""Showing runs to a person: a live progress bar on a terminal, plain lines
elsewhere. Everything goes to stderr, so stdout stays machine-readable."""

from __future__ import annotations

from typing import Protocol

from reprofarm_protocol.hangtest_events import (
    HangtestEvent,
    ProgressEvent,
    StallEvent,
    StartEvent,
)
from reprofarm_protocol.runs import RunResult
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from reprofarm_agent.runner import RunSpec


class RunDisplay(Protocol):
    def run_started(self, index: int, total: int, spec: RunSpec) -> None: ...
    def event(self, event: HangtestEvent) -> None: ...
    def run_finished(self, index: int, result: RunResult) -> None: ...
    def close(self) -> None: ...


def _result_line(index: int, result: RunResult) -> str:
    return (
        f"run {index + 1}: {result.status.value} after {result.duration_s:.1f}s, "
        f"{result.iterations} iterations on CPUs {result.cpu_set} - {result.reason}"
    )


class LogDisplay:
    """One line per run start, stall and end: for logs and pipes."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def run_started(self, index: int, total: int, spec: RunSpec) -> None:
        self._console.print(
            f"run {index + 1}/{total}: {spec.scenario} on CPUs {list(spec.placement.cpus)}",
            highlight=False,
        )

    def event(self, event: HangtestEvent) -> None:
        if isinstance(event, StallEvent):
            workers = [w.worker for w in event.workers]
            self._console.print(f"  stall: workers {workers}; taking dumps", highlight=False)

    def run_finished(self, index: int, result: RunResult) -> None:
        self._console.print("  " + _result_line(index, result), highlight=False)

    def close(self) -> None:
        pass


class TerminalDisplay:
    """A live bar per run: elapsed against the duration (or iterations against
    the total), iterations per second, and the hangs so far."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._spec: RunSpec | None = None
        self._hangs = 0
        self._progress.start()

    def run_started(self, index: int, total: int, spec: RunSpec) -> None:
        self._spec = spec
        bar_total = spec.duration_s or float(spec.workers * spec.iterations) or None
        self._task = self._progress.add_task(
            f"run {index + 1}/{total} {spec.scenario}",
            total=bar_total,
            detail=f"hangs so far: {self._hangs}",
        )

    def event(self, event: HangtestEvent) -> None:
        if self._task is None or self._spec is None:
            return
        if isinstance(event, StartEvent):
            self._progress.update(self._task, detail=f"CPUs {event.cpu_set}, starting")
        elif isinstance(event, ProgressEvent):
            done = event.elapsed_s if self._spec.duration_s else float(event.iterations)
            rate = event.iterations / event.elapsed_s if event.elapsed_s else 0.0
            self._progress.update(
                self._task,
                completed=done,
                detail=f"{event.iterations} it, {rate:.0f} it/s, hangs so far: {self._hangs}",
            )
        elif isinstance(event, StallEvent):
            self._progress.update(self._task, detail="STALL: taking dumps")

    def run_finished(self, index: int, result: RunResult) -> None:
        if result.status.value == "hung":
            self._hangs += 1
        if self._task is not None:
            self._progress.update(self._task, detail=result.status.value)
            self._progress.stop_task(self._task)
        self._progress.console.print(_result_line(index, result), highlight=False)

    def close(self) -> None:
        self._progress.stop()


def make_display(console: Console) -> RunDisplay:
    return TerminalDisplay(console) if console.is_terminal else LogDisplay(console)
