"""The counted runs, one row each, for a notebook: what ``GET /api/v1/runs/export``
and ``reprofarm export`` hand out (docs/statistics.md, "The data out").

Rows are read in chunks by run id (keyset pagination: ``id > last ORDER BY id
LIMIT n``, on the primary key), each chunk in a short transaction of its own, so
an export of a million runs holds at most one chunk in memory and a database
connection only while a chunk is read. The price: an export is not one snapshot.
A run that finishes while the export runs is in it if its id is past the chunk
being read; no run is ever in it twice.

The filters are the dashboard's (``views.RunFilter``, one definition), and
``hung`` is the ``k`` of the statistics under that filter: with a ``label`` or
``signature``, a hang of another bug is a run where *this* bug did not show
(``hung`` 0), as in ``stats.group_runs``. So summing ``hung`` and counting rows
per group gives back the k/n of ``GET /api/v1/stats``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reprofarm_protocol.jobs import RunState
from sqlalchemy import ColumnElement, and_, case, select
from sqlalchemy.orm import Session

from reprofarm_db import jobs, stats, views
from reprofarm_db.models import Agent, HardwareConfig, Job, Run, hardware_label


@dataclass(frozen=True)
class Column:
    """One column of the export: its name, its type (``int``, ``float``, ``str``,
    ``time``: each encoder maps these to its own) and what it means."""

    name: str
    kind: str
    meaning: str


COLUMNS: tuple[Column, ...] = (
    Column("run_id", "int", "the run attempt's id (GET /api/v1/runs/{run_id})"),
    Column("job_id", "int", "its job"),
    Column("status", "str", "passed, hung or failed (the states a hit rate counts)"),
    Column("hung", "int", "1 if this run counts as a hang under the filter (the k of k/n)"),
    Column("label", "str", "the analyzer's label; pending for a hang not analysed yet"),
    Column("signature", "str", "the analyzer's signature; pending likewise"),
    Column("scenario", "str", "the hangtest scenario"),
    Column("go_version", "str", "the Go version it was built with"),
    Column("cpus", "int", "CPUs it was placed on; empty: all the agent's CPUs"),
    Column("affinity", "str", "the placement policy (compact, spread, ...)"),
    Column("control_chance", "float", "control-deadlock's chance per iteration; empty: none"),
    Column("hardware", "str", "the hardware configuration's label, as on the dashboard"),
    Column("fingerprint", "str", "the hardware configuration's fingerprint"),
    Column("arch", "str", "CPU architecture (amd64, arm64)"),
    Column("hypervisor", "str", "none on bare metal, else the hypervisor"),
    Column("cpu_model", "str", "the CPU's model name"),
    Column("logical_cpus", "int", "the machine's logical CPUs"),
    Column("physical_cores", "int", "the machine's physical cores"),
    Column("os", "str", "operating system"),
    Column("os_version", "str", "its version (build)"),
    Column("agent", "str", "the agent's name"),
    Column("pool", "str", "the pool it ran in"),
    Column("iterations", "int", "iterations it completed"),
    Column("duration_s", "float", "seconds it ran"),
    Column("finished_at", "time", "when it finished (UTC)"),
)
NAMES = tuple(c.name for c in COLUMNS)

Row = tuple[Any, ...]
"""The values of one run, in the order of ``COLUMNS``."""


def _this_hang(where: views.RunFilter) -> ColumnElement[bool]:
    """What counts as a hang under the filter: ``stats._scan``'s rule."""
    is_hang: ColumnElement[bool] = Run.status == RunState.HUNG
    if where.label is not None:
        is_hang = and_(is_hang, stats.LABEL == where.label)  # noqa: SIM300 - a column
    if where.signature is not None:
        is_hang = and_(is_hang, stats.SIGNATURE == where.signature)  # noqa: SIM300
    return is_hang


def read_chunk(session: Session, *, where: views.RunFilter, after_id: int, limit: int) -> list[Row]:
    """Up to ``limit`` counted runs with ids above ``after_id``, oldest id first. The
    next chunk starts after the last row's ``run_id``; a chunk shorter than
    ``limit`` is the last."""
    h = HardwareConfig
    query = (
        select(
            Run.id,
            Run.job_id,
            Run.status,
            case((_this_hang(where), 1), else_=0),
            stats.LABEL,
            stats.SIGNATURE,
            Run.scenario,
            Run.go_version,
            Run.cpus,
            Run.affinity,
            Run.control_chance,
            h.fingerprint,
            h.arch,
            h.hypervisor,
            h.cpu_model,
            h.logical_cpus,
            h.physical_cores,
            h.os,
            h.os_version,
            Agent.name,
            Run.pool,
            Run.iterations,
            Run.duration_s,
            Run.finished_at,
        )
        .outerjoin(h, h.id == Run.hardware_config_id)
        .outerjoin(Agent, Agent.id == Run.agent_id)
        .where(Run.status.in_(stats.COUNTED), Run.id > after_id)
        .where(*views.conditions(session, where))
        .order_by(Run.id)
        .limit(limit)
    )
    # The Core connection, not the ORM session: these are plain rows, and the ORM's
    # row processing took half the time of a chunk.
    fetched = session.connection().execute(query).all()
    chances = _legacy_chances(session, {r[1] for r in fetched if r[10] is None})
    return [_row(r, chances) for r in fetched]


def _row(r: Sequence[Any], chances: dict[int, float | None]) -> Row:
    (run_id, job_id, status, hung, label, signature, scenario, go, cpus, affinity, chance) = r[:11]
    fingerprint, arch, hypervisor, cpu_model, logical, physical, os, os_version = r[11:19]
    agent, pool, iterations, duration_s, finished_at = r[19:]
    hardware = (
        None
        if fingerprint is None
        else hardware_label(_Config(cpu_model, arch, logical, hypervisor, os))
    )
    finished: datetime | None = finished_at
    return (
        run_id,
        job_id,
        status,
        int(hung),
        label,
        signature,
        scenario,
        go,
        cpus,
        affinity,
        chance if chance is not None else chances.get(job_id),
        hardware,
        fingerprint,
        arch,
        hypervisor,
        cpu_model,
        logical,
        physical,
        os,
        os_version,
        agent,
        pool,
        int(iterations),
        float(duration_s),
        finished,
    )


@dataclass(frozen=True)
class _Config:
    """The columns ``hardware_label`` reads, from a row of the chunk's query."""

    cpu_model: str
    arch: str
    logical_cpus: int
    hypervisor: str
    os: str


def _legacy_chances(session: Session, job_ids: set[int]) -> dict[int, float | None]:
    """The job's single chance for runs stored before the chance was an axis (their
    column is NULL: ``jobs.chance_of``); one query per chunk, not per run."""
    if not job_ids:
        return {}
    specs = session.execute(select(Job.id, Job.spec).where(Job.id.in_(job_ids))).all()
    return {job_id: jobs.legacy_chance(spec) for job_id, spec in specs}
