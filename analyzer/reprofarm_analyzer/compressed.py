"""Dumps as the farm stores them: the agent gzips process dumps before upload (a Go
core of 1.2 GB is mostly zeros), and engineers download them that way. Readers need
the plain file (gdb takes a path), so a compressed dump is expanded to a scratch
file for as long as it is read."""

from __future__ import annotations

import gzip
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_GZIP_MAGIC = b"\x1f\x8b"


@contextmanager
def expanded(path: Path, scratch: Path | None = None) -> Iterator[Path]:
    """``path`` itself, or its gzip-expanded copy (named without ``.gz``) in a
    temporary folder under ``scratch`` (default: the system's), removed afterwards.
    Raises OSError, EOFError or gzip.BadGzipFile for a damaged file."""
    with path.open("rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
    if not compressed:
        yield path
        return
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        plain = Path(tmp) / (path.name.removesuffix(".gz") or "dump")
        with gzip.open(path, "rb") as src, plain.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        yield plain
