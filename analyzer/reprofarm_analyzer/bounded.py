"""One dump's analysis in a child process, within ``AnalysisLimits``.

Uploads come from lab machines and may be anything: a gzip that expands a
thousandfold, a minidump whose header claims gigabytes, a text a parser chews on
for minutes. The worker must survive all of them and go on with the next task,
and ``reprofarm analyze`` must end with a reason. So the expansion and the reading
run in a child (``python -m reprofarm_analyzer.bounded``) that:

- counts the bytes it expands and refuses a dump past its kind's size limit
  (``compressed.expanded``, ``analysis.analyze_path``): the clear refusals;
- runs under ``RLIMIT_DATA`` = ``memory_bytes`` (POSIX), so a reader that still
  allocates without bound gets a ``MemoryError`` in the child, not the worker's
  machine swapping;
- is killed with everything it started (gdb) after ``timeout_s``, and ends by
  itself when its parent dies (a worker killed mid-task leaves nothing behind).

The scratch folder is the parent's, removed by the parent even when the child
was killed. Starting a Python process costs about 0.2 s, small beside the upload
of a dump.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from reprofarm_protocol.analysis import Analysis, AnalysisLimits

from reprofarm_analyzer.analysis import analyze_path
from reprofarm_analyzer.compressed import expanded
from reprofarm_analyzer.errors import (
    AnalysisCrashedError,
    AnalyzerError,
    AnalyzerUnavailableError,
    DumpLimitError,
    NotADumpError,
)


def analyze_bounded(
    path: Path,
    *,
    sidecar: Path | None = None,
    scratch: Path | None = None,
    limits: AnalysisLimits | None = None,
) -> Analysis:
    """Expand ``path`` if it is gzip-compressed and analyse it, in a child process
    within ``limits``. Raises what ``analyze_path`` raises (``NotADumpError``,
    ``AnalyzerUnavailableError``, OSError for a damaged file), ``DumpLimitError``
    for a refusal, and ``AnalysisCrashedError`` when the child died silently."""
    limits = limits or AnalysisLimits()
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="analysis-") as tmp:
        request = {
            "path": str(path.resolve()),
            "sidecar": str(sidecar.resolve()) if sidecar is not None else None,
            "scratch": tmp,
            "limits": limits.model_dump(mode="json"),
            "parent": os.getpid(),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "reprofarm_analyzer.bounded"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own group: a timeout kills gdb with it
        )
        try:
            out, err = process.communicate(json.dumps(request).encode(), timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            raise DumpLimitError(
                path, f"its analysis took longer than {limits.timeout_s:g} s"
            ) from None
        finally:
            _kill(process)
    return _answer(path, process.returncode, out, err)


def analyze_bytes_bounded(
    data: bytes, *, scratch: Path, limits: AnalysisLimits | None = None
) -> Analysis:
    """``analyze_bounded`` for a dump held in memory (a pasted one, a kept one): written to
    a temporary file in ``scratch`` for the child to read. Every failure is one
    ``AnalyzerError`` whose message says "the dump", never the temporary file's name."""
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=scratch, prefix="dump-") as held:
        held.write(data)
        held.flush()
        try:
            return analyze_bounded(Path(held.name), scratch=scratch, limits=limits)
        except (AnalyzerError, OSError) as exc:
            said = str(exc).replace(f"{held.name}: ", "").replace(held.name, "the dump")
            raise AnalyzerError(said) from exc


def _kill(process: subprocess.Popen[bytes]) -> None:
    """End the child and whatever it started (gdb), even when the child itself already
    exited: its group may outlive it."""
    if sys.platform == "win32":
        if process.poll() is None:
            process.kill()
    else:
        with contextlib.suppress(ProcessLookupError):  # the whole group ended already
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _answer(path: Path, returncode: int, out: bytes, err: bytes) -> Analysis:
    try:
        answer: dict[str, Any] = json.loads(out)
    except ValueError:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited {returncode}"
        raise AnalysisCrashedError(path, f"{how}: {tail[0]}") from None
    error = answer.get("error")
    if error is None:
        return Analysis.model_validate(answer["analysis"])
    reason = str(answer.get("reason", ""))
    if error == "limit":
        raise DumpLimitError(path, reason)
    if error == "not-a-dump":
        raise NotADumpError(path, reason)
    if error == "unavailable":
        raise AnalyzerUnavailableError(path, str(answer.get("kind")), reason)
    raise OSError(f"{path}: {reason}")


def _child() -> None:
    """The child's side: read the request, set the limits, answer one JSON object."""
    request = json.loads(sys.stdin.read())
    limits = AnalysisLimits.model_validate(request["limits"])
    _exit_with_parent(int(request["parent"]))
    _limit_memory(limits.memory_bytes)
    path = Path(request["path"])
    sidecar = Path(request["sidecar"]) if request["sidecar"] else None
    answer: dict[str, Any]
    try:
        with expanded(path, Path(request["scratch"]), limits) as plain:
            analysis = analyze_path(plain, sidecar=sidecar, limits=limits)
        answer = {"analysis": analysis.model_dump(mode="json")}
    except DumpLimitError as exc:
        answer = {"error": "limit", "reason": exc.reason}
    except MemoryError:
        answer = {
            "error": "limit",
            "reason": f"reading it needs more than {limits.memory_bytes:,} bytes of memory",
        }
    except NotADumpError as exc:
        answer = {"error": "not-a-dump", "reason": exc.reason}
    except AnalyzerUnavailableError as exc:
        answer = {"error": "unavailable", "kind": exc.kind, "reason": exc.missing}
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        answer = {"error": "unreadable", "reason": str(exc) or type(exc).__name__}
    sys.stdout.write(json.dumps(answer))


def _limit_memory(most: int) -> None:
    """RLIMIT_DATA counts the heap and private anonymous mappings (Linux 4.7+), which
    is where a Python reader's allocations go; no such limit exists on Windows,
    where the timeout alone bounds a runaway reader."""
    if sys.platform == "win32":
        return
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        most = min(most, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (most, hard))


def _exit_with_parent(parent: int) -> None:
    """A worker killed mid-task (SIGKILL, its machine's OOM killer) cannot kill its
    child: the child notices that it was re-parented and ends, with its group.
    ``parent`` comes from the parent itself: one killed while the child was still
    starting would otherwise have the child watch its new parent forever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        if sys.platform != "win32":
            os.killpg(0, signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    _child()
