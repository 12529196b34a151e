"""``reprofarm export``: the counted runs into a CSV or Parquet file, for a notebook.

It streams ``GET /api/v1/runs/export`` into ``FILE.partial``, saying on stderr how
far it got, checks that what arrived is a whole file (every CSV record has every
column; the Parquet footer is there and names its rows), and only then renames it
to ``FILE``: an interrupted or refused export leaves nothing behind that could be
mistaken for the data. Errors are one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from reprofarm_cli.local_instance import Instance, resolve
from reprofarm_cli.remote import ApiOpt, DataDirOpt, TokenOpt, _answer, _fail, _say, _stderr

FORMATS = ("csv", "parquet")
_READ_TIMEOUT_S = 300.0
"""Between two pieces of the answer: one chunk of runs read and encoded by the api."""


def export(
    out: Annotated[Path, typer.Option("--out", help="the file to write")],
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    job: Annotated[int | None, typer.Option(help="only this job's runs")] = None,
    scenario: Annotated[str | None, typer.Option(help="only this scenario")] = None,
    go: Annotated[str | None, typer.Option(help="only this Go version, e.g. 1.27.3")] = None,
    hardware: Annotated[str | None, typer.Option(help="only this fingerprint")] = None,
    since: Annotated[str | None, typer.Option(help="jobs submitted since (ISO 8601)")] = None,
    until: Annotated[str | None, typer.Option(help="jobs submitted before (ISO 8601)")] = None,
    label: Annotated[
        str | None, typer.Option(help="`hung` is 1 only for hangs with this label")
    ] = None,
    signature: Annotated[
        str | None, typer.Option(help="`hung` is 1 only for hangs with this signature")
    ] = None,
    api: ApiOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Write the counted runs (passed, hung, failed), one row each with their hardware
    facts, to a CSV or Parquet file (columns: docs/statistics.md, "The data out")."""
    if fmt not in FORMATS:
        _fail(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    filters = {
        "job_id": job,
        "scenario": scenario,
        "go_version": go,
        "hardware": hardware,
        "since": since,
        "until": until,
        "label": label,
        "signature": signature,
    }
    params = {"format": fmt, **{k: v for k, v in filters.items() if v is not None}}
    instance = resolve(api, token, data_dir)
    partial = out.with_name(out.name + ".partial")
    try:
        _download(instance, params, partial)
        rows = _rows_in(partial, fmt)
        partial.replace(out)
    except httpx.TransportError as exc:
        _fail(f"api: the export from {instance.url} broke off ({exc}); nothing was written")
    except OSError as exc:
        _fail(f"out: cannot write {out} ({exc})")
    finally:
        partial.unlink(missing_ok=True)
    _say(f"{rows} runs written to {out}")


def _download(instance: Instance, params: dict[str, Any], partial: Path) -> None:
    """The answer's bytes into ``partial``, with a running count on stderr (CSV
    records as they arrive; Parquet shows bytes, its rows are known at its end)."""
    headers = {"Authorization": f"Bearer {instance.token}"}
    timeout = httpx.Timeout(60.0, read=_READ_TIMEOUT_S)
    url = f"{instance.url}/api/v1/runs/export"
    with httpx.stream("GET", url, params=params, headers=headers, timeout=timeout) as response:
        if response.status_code >= 400:
            response.read()
            _answer(response)  # one error line, exit 2
        csv_rows = params["format"] == "csv"
        with (
            partial.open("wb") as file,
            Progress(
                TextColumn("export: {task.fields[done]}"),
                TimeElapsedColumn(),
                console=_stderr,
            ) as progress,
        ):
            task = progress.add_task("", done="starting")
            lines = written = 0
            for piece in response.iter_bytes():
                file.write(piece)
                written += len(piece)
                lines += piece.count(b"\n")
                done = f"{max(lines - 1, 0)} rows" if csv_rows else f"{written / 1e6:.1f} MB"
                progress.update(task, done=done)


def _rows_in(path: Path, fmt: str) -> int:
    """The runs in a complete file; a file cut short (a CSV record without every
    column, a Parquet file without its footer) is an error here, before the rename."""
    if fmt == "parquet":
        import pyarrow.parquet as pq  # the api's dependency, imported only when needed

        try:
            rows: int = pq.read_metadata(path).num_rows
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            _fail(f"the Parquet file from the api is not whole ({exc}); nothing was written")
        return rows
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            _fail("the api sent an empty CSV file; nothing was written")
        count = 0
        for record in reader:
            if len(record) != len(header):
                _fail(f"CSV record {count + 1} has {len(record)} of {len(header)} columns")
            count += 1
    return count
