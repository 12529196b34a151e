"""``reprofarm triage FILE|-``: "is my CI hang this bug?", asked of the farm.

Sends a dump from anywhere (a CI log, an issue page saved as HTML, ``go test -json``
output, a minidump; ``-`` reads stdin, for a paste) to ``POST /api/v1/triage`` of the
local instance (or ``--api``/``--token``, as ``submit``) and prints the analysis with the
farm's evidence for its signature. ``--json`` prints the api's answer: the keys of
``reprofarm analyze --json`` plus ``bucket`` (null, or ``signature``, ``hung_runs`` and
``by_hardware``: ``hardware``, ``runs``, ``hangs``, ``ci95_low``, ``ci95_high``),
``seen_in_ci`` (with its ``key``), ``kept_id`` and ``already_kept``. Exit 2, with nothing
on stdout, when the text is no dump (the message names what was looked for) or the api
refuses it.

``reprofarm signatures seen-in-ci KEY`` lists the dumps kept with a signature.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from reprofarm_protocol.analysis import Analysis
from rich.console import Console

from reprofarm_cli.analyze import print_report
from reprofarm_cli.local_instance import resolve
from reprofarm_cli.remote import ApiOpt, DataDirOpt, JsonOpt, TokenOpt, _call, _fail


def triage(
    file: Annotated[str, typer.Argument(help="the dump, or - to read it from stdin")],
    keep: Annotated[
        bool, typer.Option(help="let the farm keep it as seen in CI (needs a submitter token)")
    ] = False,
    source: Annotated[str | None, typer.Option(help="where it comes from (a CI job URL)")] = None,
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Analyse a dump from outside the farm and show what the farm knows of its signature."""
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        _fail(f"{file}: {exc.strerror or exc}")
    params: dict[str, Any] = {"keep": "true"} if keep else {}
    if source:
        params["source"] = source
    answer = _call(
        resolve(api, token, data_dir),
        "POST",
        "/api/v1/triage",
        content=data,
        params=params,
        headers={"Content-Type": "application/octet-stream"},
    )
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    console = Console()
    console.print(f"[bold]{'stdin' if file == '-' else file}[/bold]: {answer['kind']}")
    print_report(Analysis.model_validate(answer), console)
    _print_farm(answer, console)


def _print_farm(answer: dict[str, Any], console: Console) -> None:
    bucket = answer["bucket"]
    seen = answer["seen_in_ci"]
    if seen["dumps"]:
        console.print(
            f"  seen in CI {seen['dumps']} kept dumps, {seen['first_sent']} to {seen['last_sent']}"
            f" (reprofarm signatures seen-in-ci {seen['key']})",
            highlight=False,
        )
    if answer["kept_id"] is not None:
        before = " (already kept: not stored again)" if answer["already_kept"] else ""
        console.print(f"  kept       as triaged dump {answer['kept_id']}{before}", highlight=False)
    if bucket is None:
        console.print("  farm       never reproduced here (no bucket with this signature)")
        return
    similar = "" if bucket["match"] == "exact" else f" (similar: {bucket['similarity']:.0%})"
    console.print(
        f"  farm       {bucket['hung_runs']} hung runs in bucket {bucket['key']}{similar}",
        highlight=False,
    )
    if bucket["match"] != "exact":
        console.print(f"  why        {bucket['reason']}", highlight=False, markup=False)
    for mark in ("first_run", "latest_run"):
        run = bucket[mark]
        if run:
            console.print(
                f"  {mark.replace('_', ' '):<10} #{run['id']} {run['finished_at']}"
                f" Go {run['go_version']} on {run['hardware'][:12]}",
                highlight=False,
            )
    for hw in bucket["by_hardware"]:
        console.print(
            f"  hardware   {hw['label']}: {hw['hangs']}/{hw['runs']} "
            f"(95% CI {hw['ci95_low']:.1%} to {hw['ci95_high']:.1%})",
            highlight=False,
            markup=False,
        )
    seen_go = ", ".join(bucket["go_versions_seen"]) or "none"
    never = ", ".join(bucket["go_versions_never"]) or "none"
    console.print(f"  Go seen    {seen_go}; never with {never}", highlight=False)


signatures_app = typer.Typer(no_args_is_help=True, help="signature buckets and what CI saw")


@signatures_app.command("seen-in-ci")
def seen_in_ci(
    key: Annotated[str, typer.Argument(help="the signature's key (16 hex, from triage)")],
    limit: Annotated[int, typer.Option(min=1, max=500, help="dumps per page")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="dumps to skip (newest first)")] = 0,
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The triaged dumps kept with one signature, newest first: who sent each, when,
    from where, and its label (``GET /api/v1/signatures/{key}/seen-in-ci``)."""
    found = _call(
        resolve(api, token, data_dir),
        "GET",
        f"/api/v1/signatures/{key}/seen-in-ci",
        params={"limit": limit, "offset": offset},
    )
    if as_json:
        print(json.dumps(found, indent=2))
        return
    if not found:
        print(f"no kept triaged dump has signature {key}" + (" past that offset" if offset else ""))
        return
    for dump in found:
        print(
            f"#{dump['id']}  {dump['sent_at']}  {dump['sent_by']}  {dump['label']}"
            f" ({dump['confidence']})  {dump['size']:,} bytes  {dump['source'] or '-'}"
        )
