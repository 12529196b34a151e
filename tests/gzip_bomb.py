"""Gzip bombs for the tests of bounded analysis, written without ever holding their
expanded size: a gzip file may hold several members, and a reader expands them one
after another into one stream (RFC 1952, 2.2), so one compressed mebibyte of zeros
repeated 2,048 times is a 2 MB file that expands to 2 GiB."""

from __future__ import annotations

import gzip
from pathlib import Path

MIB = 1 << 20


def write_bomb(path: Path, *, head: bytes, expanded_bytes: int, filler: bytes = b"\0") -> int:
    """Write ``head`` followed by ``filler`` repeated, ``expanded_bytes`` in all, as
    gzip members of one MiB each; returns the compressed size."""
    first = (head + filler * MIB)[:MIB]
    block = gzip.compress((filler * MIB)[:MIB], compresslevel=9, mtime=0)
    with path.open("wb") as out:
        out.write(gzip.compress(first, compresslevel=9, mtime=0))
        for _ in range(expanded_bytes // MIB - 1):
            out.write(block)
    return path.stat().st_size
