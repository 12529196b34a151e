"""``reprofarm verify`` and ``reprofarm search``: studies, followed to their decision.

Both submit to ``POST /api/v1/studies`` and, with ``--wait``, follow the study on
stderr (runs spent against the budget, and what it waits for) until it decides;
``--json`` prints the study as the api shows it, and nothing else, on stdout."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from reprofarm_agent.durations import parse_duration
from reprofarm_protocol.jobs import FINISHED_JOB_STATES
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reprofarm_cli.local_instance import resolve
from reprofarm_cli.remote import (
    ApiOpt,
    DataDirOpt,
    JsonOpt,
    ReconnectOpt,
    TokenOpt,
    _call,
    _fail,
    _get_patiently,
    _reconnect_s,
    _split,
    _stderr,
)

ScenarioOpt = Annotated[
    str, typer.Option(help="pipe-close-race, socket-pipe-mix, control-deadlock")
]
GoOpt = Annotated[list[str] | None, typer.Option(help="Go versions, e.g. 1.25.5,1.27.3")]
PoolOpt = Annotated[list[str] | None, typer.Option(help="agent pools")]
AgentOpt = Annotated[list[str] | None, typer.Option(help="agent names")]
SelectorOpt = Annotated[list[str] | None, typer.Option(help="fact=value an agent must have")]
CpusOpt = Annotated[str, typer.Option(help="CPU counts, e.g. 1,2,all")]
AffinityOpt = Annotated[str, typer.Option(help="policies, e.g. compact,spread")]
DurationOpt = Annotated[str | None, typer.Option(help="per run, e.g. 15s")]
StallOpt = Annotated[str, typer.Option(help="a worker silent this long is a hang")]
BudgetOpt = Annotated[int, typer.Option(help="runs the study may create at most")]
BudgetHoursOpt = Annotated[float | None, typer.Option(help="run-hours it may spend at most")]
InFlightOpt = Annotated[int, typer.Option(help="runs kept open per cell (and arm)")]
WebhookOpt = Annotated[str | None, typer.Option(help="POSTed the result when it decides (signed)")]
DumpsOpt = Annotated[int, typer.Option(help="process dumps per hang")]
WaitOpt = Annotated[bool, typer.Option(help="follow the study to its decision")]
KeyOpt = Annotated[str | None, typer.Option(help="resubmits never duplicate")]

_ALIASES = {
    "go": "go_version",
    "chance": "control_chance",
    "duration": "duration_s",
    "stall_timeout": "stall_timeout_s",
}
_INTS = ("iterations", "workers", "process_dumps")
_COMMON = frozenset(
    (
        "scenario",
        "go",
        "pool",
        "agent",
        "selector",
        "cpus",
        "affinity",
        "duration",
        "stall_timeout",
        "control_chance",
        "budget",
        "budget_hours",
        "in_flight",
        "webhook",
        "process_dumps",
        "workers",
        "iterations",
        "priority",
    )
)
"""The options verify and search share (``common_spec``'s arguments, by name)."""
_FOLLOW = frozenset(
    ("wait", "as_json", "idempotency_key", "reconnect_timeout", "api", "token", "data_dir")
)
"""How both submit and follow a study (``run_study``'s arguments, by name)."""
_DURATIONS = ("duration_s", "stall_timeout_s")


def arm_overrides(items: list[str] | None, *, option: str) -> dict[str, Any]:
    """``field=value`` pairs of an arm: ``go=1.25.5``, ``control_chance=1e-6`` (``none``:
    hangtest's default), ``duration=2s``; the api checks the fields and values."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            _fail(f"{option}: {item!r} is not field=value (e.g. go=1.25.5)")
        field = _ALIASES.get(name.strip(), name.strip())
        value: Any = text.strip()
        try:
            if field in _DURATIONS:
                value = parse_duration(value, field=f"{option} {field}")
            elif field in _INTS:
                value = int(value)
            elif field == "control_chance":
                value = None if value.lower() in ("none", "default", "") else float(value)
        except ValueError as exc:
            _fail(f"{option}: {field}: {exc}")
        out[field] = value
    return out


def _chances(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(c) for c in _split([text])]
    except ValueError:
        _fail(f"control-chance: {text!r} is not a list of numbers such as 0,1e-6,1e-3")


def common_spec(
    *,
    scenario: str,
    go: list[str] | None,
    pool: list[str] | None,
    agent: list[str] | None,
    selector: list[str] | None,
    cpus: str,
    affinity: str,
    duration: str | None,
    stall_timeout: str,
    control_chance: str | None,
    budget: int,
    budget_hours: float | None,
    in_flight: int,
    webhook: str | None,
    process_dumps: int,
    workers: int,
    iterations: int | None,
    priority: int,
) -> dict[str, Any]:
    """The fields verify and search share, as the api takes them."""
    try:
        spec: dict[str, Any] = {
            "scenario": scenario,
            "pools": _split(pool),
            "agents": _split(agent),
            "selector": dict(s.split("=", 1) for s in _split(selector)),
            "cpus": [c if c == "all" else int(c) for c in _split([cpus])],
            "affinities": _split([affinity]),
            "stall_timeout_s": parse_duration(stall_timeout, field="stall-timeout"),
            "budget": {"runs": budget, "run_hours": budget_hours},
            "in_flight_per_cell": in_flight,
            "process_dumps": process_dumps,
            "workers": workers,
            "priority": priority,
        }
        if iterations is not None:
            spec["iterations"] = iterations
        if duration is not None:
            spec["duration_s"] = parse_duration(duration, field="duration")
    except ValueError as exc:
        _fail(str(exc) if ":" in str(exc) else f"cpus/selector: {exc}")
    if go:
        spec["go_versions"] = _split(go)
    if (chances := _chances(control_chance)) is not None:
        spec["control_chance"] = chances
    if webhook:
        spec["webhook_url"] = webhook
    return spec


def run_study(
    spec: dict[str, Any],
    *,
    wait: bool,
    as_json: bool,
    idempotency_key: str | None,
    reconnect_timeout: str,
    api: str | None,
    token: str | None,
    data_dir: Any,
) -> None:
    patience_s = _reconnect_s(reconnect_timeout)
    instance = resolve(api, token, data_dir)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    study: dict[str, Any] = _call(instance, "POST", "/api/v1/studies", json=spec, headers=headers)
    if wait:
        study = _follow(instance, study, patience_s)
    if as_json:
        print(json.dumps(study, indent=2))
    else:
        typer.echo(describe(study))


def _follow(instance: Any, study: dict[str, Any], patience_s: float) -> dict[str, Any]:
    path = f"/api/v1/studies/{study['job_id']}"
    with Progress(
        TextColumn("study {task.fields[job]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs  {task.fields[detail]}"),
        TimeElapsedColumn(),
        console=_stderr,
    ) as progress:
        task = progress.add_task(
            "", total=study["budget_runs"], job=study["job_id"], detail=study["reason"]
        )
        while study["status"] not in FINISHED_JOB_STATES:
            time.sleep(1)
            study = _get_patiently(instance, path, patience_s, study["job_id"])
            progress.update(task, completed=study["runs_used"], detail=study["reason"])
    return study


def describe(study: dict[str, Any]) -> str:
    """A few lines a person reads at a glance."""
    lines = [f"study {study['job_id']} ({study['kind']}): {study['status']}; {study['reason']}"]
    if study["kind"] == "verify":
        for arm in ("baseline", "candidate"):
            t = study[arm]
            lines.append(
                f"  {arm}: {t['hangs']} of {t['runs']} runs hung with the bug's label "
                f"({t['ci95_low']:.1%} to {t['ci95_high']:.1%})"
                + (f", {t['other_hangs']} other hangs" if t["other_hangs"] else "")
            )
        lines.append(f"  verdict: {study['verdict']}")
    else:
        for c in study["cells"]:
            chance = "" if c["control_chance"] is None else f", chance {c['control_chance']:g}"
            lines.append(
                f"  {c['hardware']}, {c['cpus'] or 'all'} CPUs, {c['affinity']}, go "
                f"{c['go_version']}{chance}: {c['decision']} ({c['hangs']}/{c['runs']})"
            )
    uniform = study.get("runs_uniform")
    lines.append(
        f"  runs used: {study['runs_used']}"
        + (f" (a uniform allocation: {uniform})" if uniform else "")
    )
    return "\n".join(lines)


def verify(
    scenario: ScenarioOpt,
    baseline: Annotated[
        list[str] | None,
        typer.Option(help="field=value of the baseline (repeatable), e.g. go=1.25.5"),
    ] = None,
    candidate: Annotated[
        list[str] | None,
        typer.Option(help="field=value of the candidate (repeatable), e.g. go=1.27.3"),
    ] = None,
    margin: Annotated[
        float, typer.Option(help="fixed: the candidate's rate is below the baseline's / margin")
    ] = 4.0,
    label: Annotated[
        str | None, typer.Option(help="the bug's label (default: the baseline's hangs')")
    ] = None,
    go: GoOpt = None,
    pool: PoolOpt = None,
    agent: AgentOpt = None,
    selector: SelectorOpt = None,
    cpus: CpusOpt = "all",
    affinity: AffinityOpt = "compact",
    duration: DurationOpt = None,
    stall_timeout: StallOpt = "30s",
    control_chance: Annotated[str | None, typer.Option(help="both arms' chance")] = None,
    budget: BudgetOpt = 1000,
    budget_hours: BudgetHoursOpt = None,
    in_flight: InFlightOpt = 2,
    webhook: WebhookOpt = None,
    process_dumps: DumpsOpt = 2,
    workers: Annotated[int, typer.Option(help="hangtest workers per run")] = 10,
    iterations: Annotated[int | None, typer.Option(help="per worker (or --duration)")] = None,
    priority: Annotated[int, typer.Option(help="higher leases first")] = 0,
    idempotency_key: KeyOpt = None,
    wait: WaitOpt = False,
    reconnect_timeout: ReconnectOpt = "10m",
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Is it fixed? Runs a baseline and a candidate interleaved on the cells where the
    baseline reproduces, until the verdict: fixed, not-fixed or undecided."""
    spec = common_spec(**{name: value for name, value in locals().items() if name in _COMMON})
    spec |= {
        "kind": "verify",
        "baseline": arm_overrides(baseline, option="baseline"),
        "candidate": arm_overrides(candidate, option="candidate"),
        "margin": margin,
    }
    if label:
        spec["label"] = label
    run_study(spec, **{name: value for name, value in locals().items() if name in _FOLLOW})


def search(
    scenario: ScenarioOpt,
    lo: Annotated[float, typer.Option(help="a rate at most this: does not reproduce")] = 0.005,
    hi: Annotated[float, typer.Option(help="a rate at least this: reproduces")] = 0.05,
    alpha: Annotated[float, typer.Option(help="chance to call a lo cell reproducing")] = 0.05,
    beta: Annotated[float, typer.Option(help="chance to call a hi cell not")] = 0.05,
    max_runs_per_cell: Annotated[int, typer.Option(help="a cell stays undecided after")] = 600,
    go: GoOpt = None,
    pool: PoolOpt = None,
    agent: AgentOpt = None,
    selector: SelectorOpt = None,
    cpus: CpusOpt = "all",
    affinity: AffinityOpt = "compact",
    duration: DurationOpt = None,
    stall_timeout: StallOpt = "30s",
    control_chance: Annotated[
        str | None, typer.Option(help="an axis of chances, e.g. 0,1e-6,1e-3")
    ] = None,
    budget: BudgetOpt = 1000,
    budget_hours: BudgetHoursOpt = None,
    in_flight: InFlightOpt = 2,
    webhook: WebhookOpt = None,
    process_dumps: DumpsOpt = 2,
    workers: Annotated[int, typer.Option(help="hangtest workers per run")] = 10,
    iterations: Annotated[int | None, typer.Option(help="per worker (or --duration)")] = None,
    priority: Annotated[int, typer.Option(help="higher leases first")] = 0,
    idempotency_key: KeyOpt = None,
    wait: WaitOpt = False,
    reconnect_timeout: ReconnectOpt = "10m",
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where does it reproduce? Decides each cell (hardware x CPUs x affinity x Go x
    chance) between reproduces (rate >= hi) and does-not (rate <= lo), runs going where
    they are most informative."""
    spec = common_spec(**{name: value for name, value in locals().items() if name in _COMMON})
    spec |= {
        "kind": "search",
        "lo": lo,
        "hi": hi,
        "alpha": alpha,
        "beta": beta,
        "max_runs_per_cell": max_runs_per_cell,
    }
    run_study(spec, **{name: value for name, value in locals().items() if name in _FOLLOW})
