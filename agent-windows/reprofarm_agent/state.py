"""The agent's state folder: what must survive a crash, a kill, a reboot or an
update, in one place (``--work-dir``, ``REPROFARM_WORK_DIR``; ``work\\`` of a
managed Windows install).

```
identity.json            the machine's secret, bound to the agent's name (identity.py)
inflight/run-<id>.json   a run leased and not yet spooled: run id, attempt, the lease's
                         token, hangtest's pid and start time (interrupted.py)
runs/run-<id>/           a run's folder: stdout.jsonl, stderr.txt, goroutines-*.txt,
                         process dumps, exports.json; deleted once the api has its result
spool/run-<id>.json      a result waiting for the api, with its artifacts (spool.py)
reboot.json              a reboot the agent asked for, reported at registration (reboot.py)
```

A run is in ``inflight/`` from its lease until its result is in ``spool/``, and
in ``spool/`` until the api has it, so an agent killed at any point knows, when it
starts again, every run it still owes the api a word about.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, text: str, *, private: bool = False) -> None:
    """Replace ``path`` whole: a crash (or a power cut) leaves the old content or
    the new, never half of it. The temporary file is flushed to disk before the
    rename, and the folder after it, so the rename itself is not lost either.
    ``private``: readable by the owner only (it holds a secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600 if private else 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _sync_folder(path.parent)


def remove(path: Path) -> None:
    """Delete ``path`` (if there) and make the deletion durable."""
    path.unlink(missing_ok=True)
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename, a deletion) to disk. Windows opens no
    folder this way; NTFS journals its renames itself."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # a folder that cannot be synced (Windows, some network filesystems)
    finally:
        os.close(fd)
