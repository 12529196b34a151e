"""A job's matrix: its cells (target, Go version, CPUs, affinity) with their runs in
every state and their hit rate, from one tally of the job's runs."""

from __future__ import annotations

from reprofarm_db import jobs, views
from reprofarm_protocol.jobs import RunState
from sqlalchemy.orm import Session

from reprofarm_api.views.schemas import JobCell, RateCell

CELL_KEYS = ["pool", "required_agent", "go_version", "cpus", "affinity"]


def _target(keys: dict[str, object], names: dict[int, str]) -> str:
    """How the matrix names where a cell runs (jobs.expand's words)."""
    agent, pool = keys["required_agent"], keys["pool"]
    named = names.get(agent, str(agent)) if isinstance(agent, int) else None
    return jobs.target_label(pool=pool if isinstance(pool, str) else None, agent=named)


def job_cells(session: Session, *, job_id: int) -> tuple[list[JobCell], dict[str, int]]:
    """The job's cells, and its runs by state (their sum)."""
    tallies = views.tally(session, group_by=CELL_KEYS, where=views.RunFilter(job_id=job_id))
    names = views.agent_names(session, [t.keys["required_agent"] for t in tallies])
    counts = {state.value: 0 for state in RunState}
    cells = []
    for t in tallies:
        for state, n in t.by_status.items():
            counts[state] = counts.get(state, 0) + n
        cells.append(
            JobCell(
                target=_target(t.keys, names),
                go_version=t.keys["go_version"],
                cpus=t.keys["cpus"],
                affinity=t.keys["affinity"],
                by_status=t.by_status,
                rate=RateCell.of(dict(t.keys), t.counts),
            )
        )
    return cells, counts
