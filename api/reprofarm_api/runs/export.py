"""The export's bytes: counted runs as CSV or Parquet, streamed chunk by chunk.

Each chunk (``export_chunk_rows`` runs, ``reprofarm_db.export.read_chunk``) is
read in a database slot of its own, in a short transaction, and the slot is given
back before the chunk is encoded and sent. A download over a slow link therefore
holds no connection while the client reads: it takes a slot for a few
milliseconds per chunk, queued fairly with every other request, and never starves
the pool (reprofarm_api.db_slots). What is in memory at once is one chunk and its
encoding; Parquet is written one row group per chunk and each row group is sent
as soon as it is written, so neither format is ever built whole, on disk or in
memory.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from fastapi.concurrency import run_in_threadpool
from reprofarm_db import export, views
from reprofarm_db.engine import transaction
from sqlalchemy.orm import Session, sessionmaker

from reprofarm_api.db_slots import DatabaseSlots

if TYPE_CHECKING:
    import pyarrow


class Format(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


MEDIA_TYPES = {Format.CSV: "text/csv", Format.PARQUET: "application/vnd.apache.parquet"}
"""``application/vnd.apache.parquet`` is Parquet's IANA registration (2024)."""


@functools.cache
def _schema() -> pyarrow.Schema:
    """The Parquet export's columns. pyarrow costs an api process ~40 MB of memory: it is
    loaded by the first Parquet export, not by every process at start."""
    import pyarrow as pa

    types = {
        "int": pa.int64(),
        "float": pa.float64(),
        "str": pa.string(),
        "time": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([pa.field(c.name, types[c.kind]) for c in export.COLUMNS])


class CsvEncoder:
    """RFC 4180 CSV with a header line; an empty field is a missing value (NULL),
    times are ISO 8601 in UTC."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")
        self._writer.writerow(export.NAMES)

    def add(self, rows: Sequence[export.Row]) -> bytes:
        if _TIMES:  # only the time columns need converting: the rest are written as they are
            rows = [_iso_times(r) for r in rows]
        self._writer.writerows(rows)
        return self._drain()

    def finish(self) -> bytes:
        return self._drain()

    def _drain(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode()


_TIMES = tuple(i for i, c in enumerate(export.COLUMNS) if c.kind == "time")


def _iso_times(row: export.Row) -> export.Row:
    """ISO 8601 (``str`` of a datetime puts a space where the ``T`` goes)."""
    values = list(row)
    for i in _TIMES:
        time: datetime | None = values[i]
        if time is not None:
            values[i] = time.isoformat()
    return tuple(values)


class _Drain:
    """A write-only file that hands back what was written since the last ``take``:
    pyarrow writes each row group into it as it closes the group, so each can be
    sent at once. It counts its position itself (the Parquet writer asks it)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        """Nothing buffered here: ``take`` hands everything over."""

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class ParquetEncoder:
    """One row group per chunk (so a reader can also read the file group by group),
    zstd-compressed; the footer comes with ``finish``."""

    def __init__(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._sink = _Drain()
        self._schema = _schema()
        self._writer = pq.ParquetWriter(
            pa.PythonFile(self._sink, mode="w"), self._schema, compression="zstd"
        )

    def add(self, rows: Sequence[export.Row]) -> bytes:
        if rows:
            import pyarrow as pa

            columns = zip(*rows, strict=True)
            schema = self._schema
            table = pa.Table.from_arrays(
                [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)],
                schema=schema,
            )
            self._writer.write_table(table, row_group_size=len(rows))
        return self._sink.take()

    def finish(self) -> bytes:
        self._writer.close()
        return self._sink.take()


def encoder(fmt: Format) -> CsvEncoder | ParquetEncoder:
    return CsvEncoder() if fmt is Format.CSV else ParquetEncoder()


def _read(
    factory: sessionmaker[Session], where: views.RunFilter, after_id: int, limit: int
) -> list[export.Row]:
    with transaction(factory) as session:
        return export.read_chunk(session, where=where, after_id=after_id, limit=limit)


async def first_chunk(
    slots: DatabaseSlots, factory: sessionmaker[Session], where: views.RunFilter, limit: int
) -> list[export.Row]:
    """Read before the answer starts, so a filter the database refuses, or a database
    that is down, is still an error status (422, 503) and not a cut-off 200."""
    return await slots.run(_read, factory, where, 0, limit)


async def stream(
    fmt: Format,
    *,
    slots: DatabaseSlots,
    factory: sessionmaker[Session],
    where: views.RunFilter,
    limit: int,
    first: list[export.Row],
) -> AsyncIterator[bytes]:
    """The file's bytes, chunk after chunk; ``first`` is ``first_chunk``'s rows. A
    chunk shorter than ``limit`` is the last: no extra query to learn it."""
    enc = encoder(fmt)
    rows = first
    del first  # else this frame would hold the first chunk to the end
    while True:
        # Encoding in a worker thread (tens of milliseconds a chunk): the event loop
        # keeps serving other requests meanwhile.
        yield await run_in_threadpool(enc.add, rows)
        if len(rows) < limit:
            break
        after_id = rows[-1][0]
        rows = []  # the sent chunk goes before the next is read: one chunk held, not two
        rows = await slots.run(_read, factory, where, after_id, limit)
    yield await run_in_threadpool(enc.finish)
