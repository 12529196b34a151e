"""``reprofarm run``: repeat one hangtest configuration on this machine and
summarize, with no controller. Each run gets its own folder under the output
directory (``run-001/``: stdout.jsonl, stderr.txt, dumps, result.json), and
``report.json`` is rewritten after every run, so a crash loses nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reprofarm_protocol.runs import LocalReport, RunResult

from reprofarm_agent.display import RunDisplay
from reprofarm_agent.platform import Platform
from reprofarm_agent.runner import RunSpec, run_once
from reprofarm_agent.settings import AgentSettings
from reprofarm_agent.summary import summarize


@dataclass(frozen=True)
class LocalPlan:
    spec: RunSpec
    repeat: int
    out_dir: Path


def _write_report(path: Path, results: list[RunResult]) -> LocalReport:
    report = LocalReport(runs=results, summary=summarize(results))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(report.model_dump_json(indent=2))
    tmp.replace(path)
    return report


def run_local(
    plan: LocalPlan, platform: Platform, settings: AgentSettings, display: RunDisplay
) -> LocalReport:
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    report = _write_report(plan.out_dir / "report.json", results)
    for i in range(plan.repeat):
        run_dir = plan.out_dir / f"run-{i + 1:03d}"
        display.run_started(i, plan.repeat, plan.spec)
        result = run_once(plan.spec, run_dir, platform, settings, on_event=display.event)
        (run_dir / "result.json").write_text(result.model_dump_json(indent=2))
        results.append(result)
        report = _write_report(plan.out_dir / "report.json", results)
        display.run_finished(i, result)
        if result.unkillable:
            # A process that survived kill still holds its CPUs and maybe a
            # kernel wait: more runs here would measure a broken machine.
            break
    return report
