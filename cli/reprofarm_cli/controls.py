"""``reprofarm pools`` and ``reprofarm agents``: standing controls from the command line
(docs/operations.md, "Standing controls")."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from reprofarm_agent.durations import parse_duration
from reprofarm_protocol.controls import AgentHealth
from reprofarm_protocol.jobs import AgentState
from rich.console import Console
from rich.table import Table

from reprofarm_cli.local_instance import Instance, resolve
from reprofarm_cli.remote import ApiOpt, DataDirOpt, JsonOpt, TokenOpt, _call, _fail, _say

pools_app = typer.Typer(no_args_is_help=True, help="pools' standing controls")
agents_app = typer.Typer(no_args_is_help=True, help="agents and their health")
_DAY_S = 86400.0


def _every(text: str) -> float:
    """``1d``, ``12h``, ``90m`` (a Go duration, plus days: checks run daily)."""
    try:
        if text.endswith("d") and text[:-1].replace(".", "", 1).isdigit():
            return float(text[:-1]) * _DAY_S
        return parse_duration(text, field="--positive-control-every")
    except ValueError as exc:
        _fail(str(exc))


def describe_pool(pool: dict[str, Any]) -> str:
    """A pool's controls in words, as the dashboard says them."""
    said = []
    if pool["negative_control"]:
        said.append("negative control")
    if pool["canary_at_start"]:
        said.append("canary at start")
    every = pool["positive_control_every_s"]
    if every:
        span = f"{every / _DAY_S:g} d" if every >= _DAY_S else f"{every / 3600:g} h"
        said.append(f"positive control every {span} at chance {pool['positive_control_chance']:g}")
    return ", ".join(said) or "no controls"


@pools_app.command("list")
def pools_list(
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pools with standing controls, and how many agents each has."""
    found = _call(resolve(api, token, data_dir), "GET", "/api/v1/pools")
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("pool", "agents", "controls", "set by")
    for pool in found:
        table.add_row(pool["name"], str(pool["agents"]), describe_pool(pool), pool["updated_by"])
    Console().print(table)


@pools_app.command("set")
def pools_set(
    name: Annotated[str, typer.Argument(help="the pool, as agents register with it")],
    negative_control: Annotated[
        bool,
        typer.Option(
            "--negative-control/--no-negative-control",
            help="machines that cannot have the bug: their bug hangs are harness problems",
        ),
    ] = False,
    canary_at_start: Annotated[
        bool,
        typer.Option(
            "--canary-at-start/--no-canary-at-start",
            help="check each agent's dump capture when it starts",
        ),
    ] = False,
    positive_control_every: Annotated[
        str | None, typer.Option(help="run the positive control this often: 1d, 12h")
    ] = None,
    positive_control_chance: Annotated[float, typer.Option(help="its control chance")] = 1e-3,
    positive_control_duration: Annotated[str, typer.Option(help="its run length")] = "2s",
    go_version: Annotated[str, typer.Option(help="Go release the checks run")] = "1.27.3",
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a pool's controls, all of them at once (needs an admin token)."""
    try:
        duration = parse_duration(positive_control_duration, field="--positive-control-duration")
    except ValueError as exc:
        _fail(str(exc))
    body = {
        "negative_control": negative_control,
        "canary_at_start": canary_at_start,
        "positive_control_every_s": _every(positive_control_every)
        if positive_control_every
        else None,
        "positive_control_chance": positive_control_chance,
        "positive_control_duration_s": duration,
        "go_version": go_version,
    }
    pool = _call(resolve(api, token, data_dir), "PUT", f"/api/v1/pools/{name}", json=body)
    if as_json:
        print(json.dumps(pool, indent=2))
        return
    typer.echo(f"pool {pool['name']} ({pool['agents']} agents): {describe_pool(pool)}")


_PAGE = 1000
"""The most agents `GET /agents/page` gives at once."""


def agents_matching(
    instance: Instance,
    where: dict[str, str | None],
    *,
    limit: int | None,
    offset: int,
    page_size: int = _PAGE,
) -> tuple[list[dict[str, Any]], int]:
    """The agents that match ``where`` (`GET /agents/page`'s filters), by name,
    ``limit`` from ``offset`` (None: every one, read ``page_size`` at a time), and how
    many match in all. Pages are read by offset: an agent registered or renamed
    meanwhile may be missed or shown twice."""
    params = {k: v for k, v in where.items() if v is not None}
    found: list[dict[str, Any]] = []
    while True:
        page = _call(
            instance,
            "GET",
            "/api/v1/agents/page",
            params={**params, "limit": limit or page_size, "offset": offset + len(found)},
        )
        found += page["agents"]
        last = len(page["agents"]) < page_size or offset + len(found) >= page["total"]
        if limit is not None or last:
            return found, page["total"]


@agents_app.command("list")
def agents_list(
    state: Annotated[AgentState | None, typer.Option(help="only agents in this state")] = None,
    health: Annotated[AgentHealth | None, typer.Option(help="only agents of this health")] = None,
    search: Annotated[
        str | None,
        typer.Option(help="name, os/arch or CPU model holding this (any case), or a pool"),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, max=_PAGE, help="one page of this many agents (default: every agent)"),
    ] = None,
    offset: Annotated[int, typer.Option(min=0, help="skip this many agents first")] = 0,
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Agents by name, their state and health: every agent that matches, read a page
    of 1,000 at a time, or with --limit one page of that many from --offset."""
    where = {"state": state, "health": health, "search": search}
    found, total = agents_matching(resolve(api, token, data_dir), where, limit=limit, offset=offset)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("agent", "pools", "target", "state", "health", "why")
    for a in found:
        table.add_row(
            a["name"],
            ",".join(a["pools"]),
            a["target"],
            a["state"],
            a["health"],
            a["health_detail"][:120],
        )
    Console().print(table)
    if found and len(found) < total:
        _say(f"agents {offset + 1}-{offset + len(found)} of {total}")


@agents_app.command("check")
def agents_check(
    name: Annotated[str, typer.Argument(help="the agent's name")],
    kind: Annotated[str, typer.Option(help="canary or positive-control")] = "positive-control",
    wait: Annotated[bool, typer.Option(help="wait for the outcome")] = True,
    timeout: Annotated[str, typer.Option(help="give up waiting after this long")] = "15m",
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check an agent now (needs an admin token). Exit 0 when it passed, 1 when it
    failed or said nothing (inconclusive), 2 on a refusal, 3 when waiting timed out."""
    instance = resolve(api, token, data_dir)
    try:
        patience = parse_duration(timeout, field="--timeout")
    except ValueError as exc:
        _fail(str(exc))
    named = _call(instance, "GET", "/api/v1/agents/page", params={"name": name, "limit": 1})
    if not named["agents"]:
        _fail(f"name: no agent is named {name!r}")
    (agent,) = named["agents"]
    check = _call(
        instance, "POST", f"/api/v1/agents/{agent['id']}/health-check", json={"kind": kind}
    )
    if not as_json:
        _say(f"check {check['id']} of {name} started (job {check['job_id']})")
    deadline = time.monotonic() + patience
    while wait and check["outcome"] is None:
        if time.monotonic() > deadline:
            _say(f"check {check['id']}: no outcome after {timeout}")
            raise typer.Exit(3)
        time.sleep(1.0)
        checks = _call(instance, "GET", f"/api/v1/agents/{agent['id']}/health-checks")
        check = next(c for c in checks if c["id"] == check["id"])
    if as_json:
        print(json.dumps(check, indent=2))
    elif check["outcome"] is not None:
        typer.echo(f"{check['outcome']}: {check['detail']}")
    if wait and check["outcome"] != "passed":
        raise typer.Exit(1)
