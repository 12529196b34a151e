"""Add a real goroutine dump to the corpus: one command, so the farm's first real CancelIoEx
dump (or any other) becomes a test the day it is caught.

    uv run python analyzer/tests/corpus/add.py DUMP --name NAME --label LABEL --source TEXT

DUMP is a goroutine dump file (``goroutines-1.txt`` downloaded from a run's page, or
``GET /api/v1/runs/{id}/artifacts/{name}``; ``.gz`` is expanded) or a ``reprofarm run``
folder (its first ``goroutines-*.txt``). NAME is the corpus file's name without ``.txt``
(e.g. ``hangtest-cancelioex-go1.27.3-win11-arm64``); LABEL is the label a person gives
the dump after reading it (``cancelioex-sync-io``, ..., or ``refused``); SOURCE says where
it comes from (run id, agent, hardware, Go version), for SOURCES.md.

The dump is copied unchanged, its label goes to ``expected.toml`` and a row to
``SOURCES.md``; then the analyzer reads it and the command says whether it agrees (exit 1
if not: change the rules and raise RULES_VERSION, or explain in SOURCES.md why the dump is
ambiguous; never edit the dump). Run ``uv run pytest analyzer/tests -q`` afterwards.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
from pathlib import Path

from reprofarm_analyzer.analysis import analyze_path, run_folder_dumps
from reprofarm_analyzer.errors import NotADumpError
from reprofarm_protocol.analysis import Label

CORPUS = Path(__file__).parent / "goroutines"
LABELS = [label.value for label in Label] + ["refused"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{2,100}$")


def _dump_bytes(source: Path) -> bytes:
    if source.is_dir():
        dumps = [p for p, _ in run_folder_dumps(source) if p.name.startswith("goroutines-")]
        if not dumps:
            raise SystemExit(f"{source}: no goroutines-*.txt in this run folder")
        source = dumps[0]
    data = source.read_bytes()
    return gzip.decompress(data) if source.suffix == ".gz" else data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", type=Path, help="a goroutine dump or a reprofarm run folder")
    parser.add_argument("--name", required=True, help="corpus file name, without .txt")
    parser.add_argument("--label", required=True, choices=LABELS, help="a person's verdict")
    parser.add_argument("--source", required=True, help="where it comes from, for SOURCES.md")
    parser.add_argument("--shows", default="", help="what it shows, for SOURCES.md")
    args = parser.parse_args()
    if not _NAME.match(args.name):
        raise SystemExit(f"--name {args.name!r}: lower case letters, digits, '.' and '-' only")
    target = CORPUS / f"{args.name}.txt"
    if target.exists():
        raise SystemExit(f"{target} exists already")
    target.write_bytes(_dump_bytes(args.dump))
    with (CORPUS / "expected.toml").open("a") as f:
        f.write(f'"{target.name}" = "{args.label}"\n')
    shows = args.shows.replace("|", "/") or "(to be described)"
    with (CORPUS / "SOURCES.md").open("a") as f:
        f.write(f"| `{target.name}` | {args.source.replace('|', '/')} | {shows} | {args.label} |\n")
    try:
        got = analyze_path(target).label.value
    except NotADumpError as exc:
        got = "refused"
        print(exc.reason, file=sys.stderr)
    print(f"{target.name}: a person says {args.label}, the analyzer says {got}")
    return 0 if got == args.label else 1


if __name__ == "__main__":
    sys.exit(main())
