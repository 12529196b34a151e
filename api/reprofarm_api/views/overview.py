"""The overview's map: hardware configurations by a chosen axis (or pair), pivoted
from the rows of ``views.rates``, sorted, searched and paged here so that a page
of 50 rows leaves the api however many configurations the farm has."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from reprofarm_db import views
from reprofarm_db.errors import Invalid
from reprofarm_db.hit_rates import Counts
from sqlalchemy.orm import Session

from reprofarm_api.views.schemas import HardwareRead, MapRow, OverviewRead, RateCell

AXES = ("cpus", "affinity", "go_version", "scenario")
"""What the map's columns may be, alone or in pairs."""

SORTS = ("hangs", "runs", "hit_rate", "hardware")


def parse_axes(columns: str) -> list[str]:
    axes = [c.strip() for c in columns.split(",") if c.strip()]
    if not 1 <= len(axes) <= 2 or len(set(axes)) != len(axes):
        raise Invalid("columns", "name one axis or two different ones")
    for axis in axes:
        if axis not in AXES:
            raise Invalid("columns", f"{axis[:40]!r} is not one of {', '.join(AXES)}")
    return axes


def _sort_key(sort: str, total: Counts, label: str) -> tuple[Any, ...]:
    if sort == "hardware":
        return (label,)
    if sort == "hit_rate":
        return (-(total.hangs / total.runs if total.runs else 0.0), -total.runs, label)
    if sort == "runs":
        return (-total.runs, label)
    return (-total.hangs, -total.runs, label)


def overview(
    session: Session,
    *,
    axes: Sequence[str],
    where: views.RunFilter,
    search: str | None,
    sort: str,
    limit: int,
    offset: int,
) -> OverviewRead:
    if sort not in SORTS:
        raise Invalid("sort", f"{sort[:40]!r} is not one of {', '.join(SORTS)}")
    # Three small questions instead of every (configuration, column) cell: totals
    # per configuration (to search, sort and page), the columns, and the cells of
    # the page's configurations only. Counts add up, so a total is the sum of its
    # row's cells and the columns are those of any configuration.
    totals: dict[str, Counts] = {}
    labels: dict[str, str] = {}
    for r in views.rates(session, group_by=["hardware"], where=where):
        fingerprint = r.keys["hardware"]
        if fingerprint is None:
            continue  # runs never leased to an agent have no hardware
        totals[fingerprint] = r.counts
        labels[fingerprint] = r.keys.get("hardware_label") or fingerprint
    columns = sorted(
        {tuple(r.keys[a] for a in axes) for r in views.rates(session, group_by=axes, where=where)},
        key=lambda c: [views.order_key(v) for v in c],
    )
    if search:
        needle = search.lower()
        totals = {f: c for f, c in totals.items() if needle in labels[f].lower()}
    ordered = sorted(totals, key=lambda f: _sort_key(sort, totals[f], labels[f]))
    page = ordered[offset : offset + limit]
    configs = {c.fingerprint: c for c in views.hardware_by_fingerprints(session, page)}
    cells: dict[str, dict[tuple[Any, ...], RateCell]] = defaultdict(dict)
    if page:
        on_page = replace(where, hardware_in=tuple(page))
        for r in views.rates(session, group_by=["hardware", *axes], where=on_page):
            key = tuple(r.keys[a] for a in axes)
            cells[r.keys["hardware"]][key] = RateCell.of({a: r.keys[a] for a in axes}, r.counts)
    map_rows = [
        MapRow(
            hardware=HardwareRead.of(configs[fingerprint]),
            total=RateCell.of({"hardware": fingerprint}, totals[fingerprint]),
            cells=[cells[fingerprint].get(c) for c in columns],
        )
        for fingerprint in page
    ]
    return OverviewRead(
        columns=list(axes),
        column_values=[list(c) for c in columns],
        rows=map_rows,
        total_rows=len(ordered),
        offset=offset,
        limit=limit,
    )
