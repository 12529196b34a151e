"""Artifact bytes on local disk: partial uploads by run and name, finished
ones by sha256 (content-addressed: the same dump uploaded twice is one file).

One upload of a given artifact at a time: ``upload_lock`` takes an exclusive,
non-blocking lock beside the partial file, held from the first database check
to the final record, so two requests (in one api process or several on this
host) can never write, hash or move the same partial file at once.

Bytes are hashed as they are written (``PartialFile``), so completing an upload
compares two digests and renames a file: it never reads the file again (it
used to read up to 8 GiB back, inside a database slot). A resumed upload needs
the hash of the bytes already kept: this process remembers it
(``_RunningHashes``) when it kept them; otherwise (another api process, a
restart) the kept prefix is hashed once when the resumed request opens the
file, outside any database slot.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from _hashlib import HASH

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows hosts fall back to exclusive creation
    fcntl = None  # type: ignore[assignment]

_CHUNK = 1 << 20


class UploadBusy(Exception):  # noqa: N818 - reads as the state it reports
    """Another request is uploading this artifact right now."""


class PartialLost(Exception):  # noqa: N818
    """The partial file holds fewer bytes than the database says were kept
    (removed as abandoned, or the disk lost it): the upload starts again."""


class PartialFile:
    """A partial upload open for appending; every byte written is hashed."""

    def __init__(self, f: BinaryIO, digest: HASH, offset: int) -> None:
        self._f = f
        self._digest = digest
        self.offset = offset

    def write(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self._f.write(chunk)
        self.offset += len(chunk)

    def close(self) -> None:
        self._f.close()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def digest_state(self) -> HASH:
        """A copy of the running hash, to resume from ``offset`` later."""
        return self._digest.copy()


class _RunningHashes:
    """The hash of each partial file's kept prefix, as this process left it.
    Bounded: an entry forgotten (evicted, or another process kept the bytes)
    only costs one re-read of that prefix at the next resume."""

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._states: OrderedDict[Path, tuple[int, HASH]] = OrderedDict()
        self._lock = Lock()

    def keep(self, partial: Path, offset: int, digest: HASH) -> None:
        with self._lock:
            self._states[partial] = (offset, digest)
            self._states.move_to_end(partial)
            while len(self._states) > self._capacity:
                self._states.popitem(last=False)

    def take(self, partial: Path, offset: int) -> HASH | None:
        with self._lock:
            found = self._states.pop(partial, None)
        if found is None or found[0] != offset:
            return None
        return found[1]

    def forget(self, partial: Path) -> None:
        with self._lock:
            self._states.pop(partial, None)


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "partial").mkdir(parents=True, exist_ok=True)
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        self._hashes = _RunningHashes()
        self.rehashed_bytes = 0
        """Bytes of kept prefixes hashed again at a resume (none when this
        process kept them): what a resume cost in reading."""

    def partial(self, run_id: int, name: str) -> Path:
        return self.root / "partial" / f"{run_id}-{name}"

    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    @contextmanager
    def upload_lock(self, partial: Path) -> Iterator[None]:
        """Hold the partial file for one upload; UploadBusy if another has it."""
        lock = partial.with_name(partial.name + ".lock")
        if fcntl is None:  # pragma: no cover
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                raise UploadBusy(f"artifact {partial.name} is being uploaded; retry") from None
        else:
            fd = os.open(lock, os.O_CREAT | os.O_WRONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(fd).st_ino != lock.stat().st_ino:
                    raise BlockingIOError  # the holder just removed it: someone else won
            except (BlockingIOError, FileNotFoundError):
                os.close(fd)
                raise UploadBusy(f"artifact {partial.name} is being uploaded; retry") from None
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            os.close(fd)

    def open_partial(self, partial: Path, offset: int) -> PartialFile:
        """The partial file, cut at ``offset`` (what the database says was kept),
        with the running hash of those ``offset`` bytes. Raises PartialLost when
        the file is shorter than that."""
        f = partial.open("r+b" if partial.exists() else "wb")
        try:
            digest = self._hashes.take(partial, offset)
            if digest is None:
                digest = self._hash_prefix(f, offset, partial)
            f.seek(offset)
            f.truncate()
        except BaseException:
            f.close()
            raise
        return PartialFile(f, digest, offset)

    def _hash_prefix(self, f: BinaryIO, offset: int, partial: Path) -> HASH:
        digest = hashlib.sha256()
        left = offset
        while left > 0:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                raise PartialLost(f"{partial.name} holds {offset - left} of {offset} kept bytes")
            digest.update(chunk)
            left -= len(chunk)
        self.rehashed_bytes += offset
        return digest

    def keep_hash(self, partial: Path, upload: PartialFile) -> None:
        """Remember the hash of the bytes an unfinished upload kept, for its resume."""
        self._hashes.keep(partial, upload.offset, upload.digest_state())

    def discard(self, partial: Path) -> None:
        self._hashes.forget(partial)
        partial.unlink(missing_ok=True)

    def finish(self, partial: Path, sha256: str, upload: PartialFile) -> Path | None:
        """Move a complete upload to its blob if the hash of the bytes written is
        the announced one; else delete it and return None (the agent uploads
        again from zero). Reads nothing: the bytes were hashed as they came."""
        self._hashes.forget(partial)
        if upload.hexdigest() != sha256:
            partial.unlink(missing_ok=True)
            return None
        blob = self.blob(sha256)
        try:
            partial.replace(blob)
        except FileNotFoundError:
            raise PartialLost(f"{partial.name} was removed") from None
        return blob
