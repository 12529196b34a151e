"""``explain``: which factor explains the hit rate, over the counted runs under the same
filters as the statistics. This module makes the cells (one per hardware configuration,
CPU count, affinity, Go version, control chance and scenario, with its machines'
spread) from ``views.rates``, the dashboard's rates (the rollups unless a time range
asks for a scan), so the rollups feed the model at a million runs;
reprofarm_db.explain_model is the math.

Factor names are the statistics group keys (``cpus``, ``affinity``, ``go_version``,
``control_chance``, ``scenario``) and hardware facts of the configuration (``arch``,
``hypervisor``: ``none`` is bare metal, ``cpu_model``, ``pe_cores``: ``hybrid`` when
the CPUs have more than one efficiency class).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reprofarm_db import views
from reprofarm_db.explain_model import Cell, Report
from reprofarm_db.explain_model import explain as explain_cells
from reprofarm_db.hit_rates import GroupRow
from reprofarm_db.models import HardwareConfig

FACTORS = (
    "scenario",
    "arch",
    "hypervisor",
    "cpu_model",
    "pe_cores",
    "cpus",
    "affinity",
    "go_version",
    "control_chance",
)
_RUN_KEYS = ("hardware", "scenario", "go_version", "cpus", "affinity", "control_chance")
_HARDWARE_FACTORS = ("arch", "hypervisor", "cpu_model", "pe_cores")
UNKNOWN = "unknown"


def _facts(session: Session, fingerprints: Collection[str]) -> dict[str, dict[str, str]]:
    """The hardware factors of each configuration; only the efficiency classes are read
    from the JSON description (its CPU list is large)."""
    if not fingerprints:
        return {}
    h = HardwareConfig
    rows = session.execute(
        select(
            h.fingerprint, h.arch, h.hypervisor, h.cpu_model, h.description["efficiency_classes"]
        ).where(h.fingerprint.in_(fingerprints))
    )
    found = {}
    for fingerprint, arch, hypervisor, cpu_model, classes in rows:
        pe = UNKNOWN
        if isinstance(classes, list):
            pe = "hybrid" if len(classes) > 1 else "uniform"
        found[fingerprint] = {
            "arch": arch,
            "hypervisor": hypervisor,
            "cpu_model": cpu_model,
            "pe_cores": pe,
        }
    return found


def _level(key: str, value: Any) -> str:
    if value is None:
        return {"cpus": "all", "control_chance": "default"}.get(key, UNKNOWN)
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def machines_chi2(row: GroupRow) -> tuple[float, int]:
    """Pearson's chi-square of the machines' hit rates around the group's, and its df:
    the homogeneity statistic of ``Spread.p_value`` without Yates' correction (0, 0
    when it is undefined: one machine, or a rate of 0 or 1)."""
    hangs, runs, spread = row.counts.hangs, row.counts.runs, row.spread
    others = runs - hangs
    if spread.agents < 2 or hangs == 0 or others == 0:
        return 0.0, 0
    excess = max(0.0, spread.hangs_sq_per_run - hangs * hangs / runs)
    return runs * runs / (hangs * others) * excess, spread.agents - 1


def explain(
    session: Session,
    *,
    job_id: int | None = None,
    label: str | None = None,
    signature: str | None = None,
    scenario: str | None = None,
    go_version: str | None = None,
    submitted_since: datetime | None = None,
) -> Report:
    """The explain report over the counted runs these filters keep: the rates the
    dashboard shows (``views.rates``: the rollups, or a scan for a time range)."""
    where = views.RunFilter(
        job_id=job_id,
        scenario=scenario,
        go_version=go_version,
        label=label,
        signature=signature,
        submitted_since=submitted_since,
    )
    rows = views.rates(session, group_by=_RUN_KEYS, where=where)
    facts = _facts(session, {r.keys["hardware"] for r in rows if r.keys["hardware"]})
    unknown = dict.fromkeys(_HARDWARE_FACTORS, UNKNOWN)
    cells = []
    named: dict[tuple[str, Any], str] = {}  # 48,000 rows share a few dozen values
    for r in rows:
        levels = {}
        for k in _RUN_KEYS[1:]:
            value = r.keys[k]
            if (k, value) not in named:
                named[k, value] = _level(k, value)
            levels[k] = named[k, value]
        levels.update(facts.get(r.keys["hardware"], unknown))
        chi2, df = machines_chi2(r)
        cells.append(Cell(levels, r.counts.hangs, r.counts.runs, chi2, df))
    return explain_cells(cells, FACTORS)


def as_dict(report: Report) -> dict[str, Any]:
    """The report as JSON: every field, plus ``aliased`` (the factor groups)."""
    out = dataclasses.asdict(report)
    out["aliased"] = report.aliased
    return out
