"""Dumps as the farm stores them: the agent gzips process dumps before upload (a Go
core of 1.2 GB is mostly zeros), and engineers download them that way. Readers need
the plain file (gdb takes a path), so a compressed dump is expanded to a scratch
file for as long as it is read.

Expansion is bounded, because a compressed file says nothing reliable about its
expanded size (a 2 MB gzip expands to 2 GiB; the trailer's ISIZE is modulo 4 GiB
and a multi-member file has one per member): the first expanded bytes say what the
dump is, which picks its size limit (``AnalysisLimits``), and the stream is counted
as it is written. Blocks of zeros become holes (as the agent makes its cores
sparse), so a Go core's reserved arenas, or a bomb of zeros, take no disk; the
non-zero bytes written are bounded by ``max_scratch_bytes``.
"""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol

from reprofarm_protocol.analysis import AnalysisLimits

from reprofarm_analyzer.errors import DumpLimitError

_GZIP_MAGIC = b"\x1f\x8b"
_BLOCK = 1 << 20
_ZEROS = bytes(_BLOCK)


def size_limit(head: bytes, limits: AnalysisLimits) -> tuple[int, str]:
    """The largest size a dump starting with ``head`` may have, and what it is
    called in a refusal. Anything that is no process dump is read as text."""
    if head.startswith(b"MDMP"):
        return limits.max_minidump_bytes, "a minidump"
    if head.startswith(b"\x7fELF"):
        return limits.max_core_bytes, "a core"
    return limits.max_text_bytes, "a goroutine dump (text)"


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@contextmanager
def expanded(
    path: Path, scratch: Path | None = None, limits: AnalysisLimits | None = None
) -> Iterator[Path]:
    """``path`` itself, or its gzip-expanded copy (named without ``.gz``) in a
    temporary folder under ``scratch`` (default: the system's), removed afterwards.
    Raises ``DumpLimitError`` as soon as the expanded stream passes its limit, and
    OSError, EOFError, zlib.error or gzip.BadGzipFile for a damaged file."""
    limits = limits or AnalysisLimits()
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
            _expand(src, dst, path, limits)
        yield plain


def _expand(src: _Reader, dst: IO[bytes], name: Path, limits: AnalysisLimits) -> None:
    """Copy in blocks, seeking over blocks of zeros, until the stream ends or a
    limit is passed (never reading more than one block past it)."""
    size = stored = 0
    block = src.read(_BLOCK)
    most, what = size_limit(block, limits)
    while block:
        size += len(block)
        if size > most:
            raise DumpLimitError(name, f"it expands past {most:,} bytes, the limit for {what}")
        if block == _ZEROS[: len(block)]:
            dst.seek(len(block), 1)
        else:
            stored += len(block)
            if stored > limits.max_scratch_bytes:
                raise DumpLimitError(
                    name,
                    f"its expanded data passes {limits.max_scratch_bytes:,} bytes of scratch disk",
                )
            dst.write(block)
        block = src.read(_BLOCK)
    dst.truncate(size)  # a file that ends in a hole still has its full size
