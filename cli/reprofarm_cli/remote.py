"""Commands that talk to the api: submit, watch, stats, explain, token create."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from reprofarm_agent.durations import parse_duration
from reprofarm_protocol.jobs import FINAL_STATES, FINISHED_JOB_STATES, RunState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reprofarm_cli.local_instance import Instance, resolve

_stderr = Console(stderr=True, soft_wrap=True)
FINISHED = tuple(s.value for s in RunState if s in FINAL_STATES)  # in lifecycle order

ApiOpt = Annotated[str | None, typer.Option("--api", help="api URL [REPROFARM_API, local up]")]
TokenOpt = Annotated[str | None, typer.Option(help="bearer token [REPROFARM_TOKEN, local up]")]
DataDirOpt = Annotated[
    Path | None, typer.Option(help="the local up instance's folder [REPROFARM_DATA_DIR]")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON on stdout only")]
ReconnectOpt = Annotated[
    str,
    typer.Option(
        envvar="REPROFARM_RECONNECT_TIMEOUT",
        help="following a job, how long to wait for an api that went away (restart, "
        "outage) before giving up with exit code 3",
    ),
]
_RETRYABLE = (502, 503, 504)  # the api (or a proxy before it) says: not now
_RETRY_FIRST_S = 0.5
_RETRY_CAP_S = 5.0


def _fail(message: str) -> NoReturn:
    _stderr.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(2)


def _request(instance: Instance, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {instance.token}", **kwargs.pop("headers", {})}
    return httpx.request(method, instance.url + path, headers=headers, timeout=60, **kwargs)


def _answer(response: httpx.Response) -> Any:
    """The JSON body, or one ``error: HTTP <code>: <detail>`` line and exit 2."""
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        if isinstance(detail, list):  # FastAPI validation errors
            detail = "; ".join(
                f"{'.'.join(str(p) for p in d['loc'][1:])}: {d['msg']}" for d in detail
            )
        elif isinstance(detail, dict):
            detail = detail["message"]  # it names the field already
        _fail(f"HTTP {response.status_code}: {detail}")
    return response.json()


def _call(instance: Instance, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = _request(instance, method, path, **kwargs)
    except httpx.TransportError as exc:
        _fail(f"api: cannot reach {instance.url} ({exc}); is `reprofarm up` running?")
    return _answer(response)


def _get_patiently(instance: Instance, path: str, patience_s: float, job_id: int) -> Any:
    """GET that waits out an api restart or outage (``up`` restarted, a deploy,
    a database failover): while the api is unreachable or answers 502/503/504 it
    retries with a capped backoff, saying so once on stderr, and gives up with
    exit code 3 only after ``patience_s`` without an answer."""
    down_since: float | None = None
    delay = _RETRY_FIRST_S
    while True:
        try:
            response = _request(instance, "GET", path)
            reason = f"answered HTTP {response.status_code}"
            if response.status_code not in _RETRYABLE:
                break
        except httpx.TransportError as exc:
            reason = f"unreachable ({exc.__class__.__name__}: {exc})"
        now = time.monotonic()
        if down_since is None:
            down_since = now
            _say(f"api: {instance.url} {reason}; retrying for up to {patience_s:.0f}s")
        waited = now - down_since
        if waited >= patience_s:
            _say(
                f"error: api: {instance.url} {reason} for {waited:.0f}s; gave up following "
                f"job {job_id}, which goes on (reprofarm watch {job_id})"
            )
            raise typer.Exit(3)
        time.sleep(min(delay, patience_s - waited))
        delay = min(2 * delay, _RETRY_CAP_S)
    if down_since is not None:
        _say(f"api: {instance.url} is back after {time.monotonic() - down_since:.0f}s")
    return _answer(response)


def _say(message: str) -> None:
    _stderr.print(message, markup=False, highlight=False)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _finished(job: dict[str, Any]) -> int:
    return sum(job["runs"].get(s, 0) for s in FINISHED)


def _follow(instance: Instance, job_id: int, show: bool, patience_s: float) -> dict[str, Any]:
    path = f"/api/v1/jobs/{job_id}"
    job: dict[str, Any] = _get_patiently(instance, path, patience_s, job_id)
    with Progress(
        TextColumn("job {task.fields[job]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=_stderr,
        disable=not show,
    ) as progress:
        task = progress.add_task("", total=job["total_runs"], job=job_id, detail="")
        while job["status"] not in FINISHED_JOB_STATES:
            time.sleep(1)
            job = _get_patiently(instance, path, patience_s, job_id)
            r = job["runs"]
            progress.update(
                task,
                total=job["total_runs"],
                completed=_finished(job),
                detail=f"{job['status']}: {r['hung']} hung, {r['passed']} passed, "
                f"{r['leased']} running, {r['ready'] + r['pending']} waiting",
            )
    return job


def _reconnect_s(text: str) -> float:
    try:
        return parse_duration(text, field="reconnect-timeout")
    except ValueError as exc:
        _fail(str(exc))


def _summary(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": job["id"],
        "status": job["status"],
        "runs": {s: job["runs"].get(s, 0) for s in FINISHED},
        "skipped": job["skipped"],
    }


def submit(
    scenario: Annotated[
        str, typer.Option(help="pipe-close-race, socket-pipe-mix, control-deadlock")
    ],
    go: Annotated[list[str] | None, typer.Option(help="Go versions, e.g. 1.25.5,1.27.3")] = None,
    pool: Annotated[list[str] | None, typer.Option(help="agent pools")] = None,
    agent: Annotated[list[str] | None, typer.Option(help="agent names")] = None,
    selector: Annotated[
        list[str] | None, typer.Option(help="fact=value an agent must have")
    ] = None,
    each_agent: Annotated[
        bool, typer.Option(help="run every cell on every matching agent")
    ] = False,
    cpus: Annotated[str, typer.Option(help="CPU counts, e.g. 1,2,all")] = "all",
    affinity: Annotated[str, typer.Option(help="policies, e.g. compact,spread")] = "compact",
    repeats: Annotated[int, typer.Option(help="runs per cell")] = 1,
    duration: Annotated[str | None, typer.Option(help="per run, e.g. 15s")] = None,
    iterations: Annotated[int | None, typer.Option(help="per worker")] = None,
    workers: Annotated[int, typer.Option()] = 10,
    stall_timeout: Annotated[str, typer.Option()] = "30s",
    control_chance: Annotated[
        str | None, typer.Option(help="control-deadlock's chance, an axis: e.g. 0,1e-6,1e-3")
    ] = None,
    process_dumps: Annotated[int, typer.Option(help="process dumps per hang")] = 2,
    priority: Annotated[int, typer.Option()] = 0,
    wait_for_agents: Annotated[
        str | None,
        typer.Option(
            help="wait this long (e.g. 10m) for matching agents instead of refusing the job"
        ),
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="resubmits never duplicate")] = None,
    dry_run: Annotated[bool, typer.Option(help="show the expansion, store nothing")] = False,
    wait: Annotated[bool, typer.Option(help="follow the job to its end")] = False,
    reconnect_timeout: ReconnectOpt = "10m",
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a reproduction job."""
    try:
        spec: dict[str, Any] = {
            "scenario": scenario,
            "pools": _split(pool),
            "agents": _split(agent),
            "selector": dict(s.split("=", 1) for s in _split(selector)),
            "fan_out": "each-agent" if each_agent else "any-agent",
            "cpus": [c if c == "all" else int(c) for c in _split([cpus])],
            "affinities": _split([affinity]),
            "repeats": repeats,
            "workers": workers,
            "stall_timeout_s": parse_duration(stall_timeout, field="stall-timeout"),
            "process_dumps": process_dumps,
            "priority": priority,
        }
    except ValueError as exc:
        _fail(str(exc) if ":" in str(exc) else f"cpus/selector: {exc}")
    if go:
        spec["go_versions"] = _split(go)
    if duration is not None:
        try:
            spec["duration_s"] = parse_duration(duration, field="duration")
        except ValueError as exc:
            _fail(str(exc))
    if iterations is not None:
        spec["iterations"] = iterations
    if wait_for_agents is not None:
        try:
            spec["wait_for_agents_s"] = parse_duration(wait_for_agents, field="wait-for-agents")
        except ValueError as exc:
            _fail(str(exc))
    if control_chance is not None:
        try:
            spec["control_chance"] = [float(c) for c in _split([control_chance])]
        except ValueError:
            _fail(f"control-chance: {control_chance!r} is not a list of numbers like 0,1e-3")
    patience_s = _reconnect_s(reconnect_timeout)
    instance = resolve(api, token, data_dir)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    path = "/api/v1/jobs" + ("?dry_run=true" if dry_run else "")
    job = _call(instance, "POST", path, json=spec, headers=headers)
    if dry_run:
        print(json.dumps(job, indent=2)) if as_json else _stderr.print(
            f"{job['runs']} runs on {len(job['eligible_agents'])} eligible agents; "
            f"{len(job['skipped'])} cells skipped",
            highlight=False,
        )
        return
    if wait:
        job = _follow(instance, job["id"], show=True, patience_s=patience_s)
    if as_json:
        print(json.dumps(_summary(job), indent=2))
    else:
        typer.echo(
            f"job {job['id']}: {job['status']}, {job['total_runs']} runs "
            f"({', '.join(f'{k} {v}' for k, v in _summary(job)['runs'].items() if v)})"
        )


def watch(
    job_id: Annotated[int, typer.Argument(help="the job to follow")],
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
    reconnect_timeout: ReconnectOpt = "10m",
) -> None:
    """Follow a job's progress to its end, waiting out api restarts."""
    patience_s = _reconnect_s(reconnect_timeout)
    job = _follow(resolve(api, token, data_dir), job_id, show=True, patience_s=patience_s)
    if as_json:
        print(json.dumps(_summary(job), indent=2))
    else:
        typer.echo(f"job {job_id}: {job['status']}")


def stats(
    group_by: Annotated[
        str,
        typer.Option(
            help="keys: hardware,cpus,affinity,go_version,control_chance,scenario,pool,agent"
        ),
    ] = "hardware",
    job: Annotated[int | None, typer.Option(help="only this job")] = None,
    compare: Annotated[str | None, typer.Option(help="a key to compare across (Fisher)")] = None,
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Hit rates by group with Wilson 95% intervals. --json prints the list of rows."""
    params: dict[str, Any] = {"group_by": group_by}
    if job is not None:
        params["job_id"] = job
    if compare:
        params["compare"] = compare
    report = _call(resolve(api, token, data_dir), "GET", "/api/v1/stats", params=params)
    if as_json:
        print(json.dumps(report["rows"], indent=2))
        return
    table = Table("group", "runs", "hangs", "hit rate", "95% CI", "runs for 95%")
    for row in report["rows"]:
        label = ", ".join(f"{k}={row.get(k + '_label', row[k])}" for k in report["group_by"])
        rate = "-" if row["hit_rate"] is None else f"{row['hit_rate']:.1%}"
        ci = "-" if row["ci95_low"] is None else f"{row['ci95_low']:.1%} to {row['ci95_high']:.1%}"
        table.add_row(
            label, str(row["runs"]), str(row["hangs"]), rate, ci, str(row["runs_for_95pct"] or "-")
        )
    Console().print(table)
    for c in report["comparisons"]:
        typer.echo(f"{c['a']} vs {c['b']}: p={c['p_value']:.3g}, q={c['q_value']:.3g}")
    _warn_of_harness_problems(report.get("harness_problems") or {})


def _warn_of_harness_problems(problems: dict[str, Any]) -> None:
    """Said on stderr beside the table: what the rates above do not count, and why."""
    hangs = problems.get("negative_control_hangs", 0)
    unhealthy = [a["name"] for a in problems.get("unhealthy_agents", [])]
    if hangs:
        _say(f"harness problem: {hangs} hangs on negative controls (not counted above)")
    if unhealthy:
        _say(f"unhealthy agents (their runs are not counted): {', '.join(unhealthy)}")


def explain(
    scenario: Annotated[str | None, typer.Option(help="only this scenario")] = None,
    job: Annotated[int | None, typer.Option(help="only this job")] = None,
    go_version: Annotated[str | None, typer.Option(help="only this Go version")] = None,
    label: Annotated[str | None, typer.Option(help="count only hangs with this label")] = None,
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Which factor explains the hit rate: per factor a penalised likelihood-ratio test
    with BH q-values, per level an odds ratio against the reference with a 95% interval,
    and the factors the runs cannot tell apart. --json prints the whole report."""
    params = {
        k: v
        for k, v in (
            ("scenario", scenario),
            ("job_id", job),
            ("go_version", go_version),
            ("label", label),
        )
        if v is not None
    }
    report = _call(resolve(api, token, data_dir), "GET", "/api/v1/explain", params=params)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    typer.echo(f"{report['hangs']} hangs in {report['runs']} counted runs, {report['cells']} cells")
    table = Table("factor", "p", "q", "level", "runs", "hangs", "odds ratio", "95% CI")
    for f in report["factors"]:
        name = " = ".join([f["factor"], *f["aliased_with"]])
        p = "-" if f["p"] is None else f"{f['p']:.3g}"
        q = "-" if f["q"] is None else f"{f['q']:.3g}"
        for i, lv in enumerate(f["levels"]):
            if lv["reference"]:
                ratio, ci = "1 (reference)", ""
            elif lv["odds_ratio"] is None:
                ratio, ci = f"aliased with {', '.join(lv['aliased_with'])}", ""
            else:
                ratio = f"{lv['odds_ratio']:.3g}"
                ci = f"{lv['ci95_low']:.3g} to {lv['ci95_high']:.3g}"
            first = i == 0
            table.add_row(
                name if first else "",
                p if first else "",
                q if first else "",
                lv["level"],
                str(lv["runs"]),
                str(lv["hangs"]),
                ratio,
                ci,
            )
    Console(width=max(120, Console().width)).print(table)  # piped: 80 columns cut the names
    if report["constant"]:
        typer.echo(
            "the same in every run: " + ", ".join(f"{k}={v}" for k, v in report["constant"].items())
        )
    for line in [a["says"] for a in report["aliasing"]] + report["says"]:
        typer.echo(line)
    for s in report["stratified"]:
        if s["breslow_day_p"] is not None and s["breslow_day_p"] < 0.05:
            typer.echo(s["says"])


token_app = typer.Typer(no_args_is_help=True, help="bearer tokens")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="viewer, submitter, agent or admin")],
    name: Annotated[str, typer.Option(help="who or what it is for")] = "cli",
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a token (needs an admin token; the local up instance has one)."""
    created = _call(
        resolve(api, token, data_dir), "POST", "/api/v1/tokens", json={"name": name, "role": role}
    )
    print(created["token"])
