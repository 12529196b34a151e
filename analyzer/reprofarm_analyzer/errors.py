"""The analyzer's exceptions.

Every error the analyzer raises on purpose derives from ``AnalyzerError``, so the worker and
the CLI can turn any of them into one message at their edge::

    AnalyzerError
    ├── NotADumpError             the file is neither a goroutine dump, a minidump nor a core
    ├── AnalyzerUnavailableError  the file is a dump, but the module that reads its kind is
    │                             not installed (a process-dump reader of a later release)
    ├── DumpLimitError            reading it would take more bytes, memory or time than
    │                             ``AnalysisLimits`` allow (a gzip bomb, a runaway reader)
    └── AnalysisCrashedError      the process analysing it died without saying why

Reading a dump never raises for bad *content*: what could not be read goes into
``Analysis.problems``. Other modules keep their own narrow errors (``SidecarError``,
``ContextError``) for malformed inputs they are handed directly.
"""

from __future__ import annotations

from pathlib import Path


class AnalyzerError(Exception):
    """Base of the analyzer's own errors."""


class NotADumpError(AnalyzerError):
    """A file that is none of the dump kinds the analyzer reads (e.g. ``stdout.jsonl``)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: not a dump ({reason})")


class AnalyzerUnavailableError(AnalyzerError):
    """The dump's kind is known but its reader module cannot be imported."""

    def __init__(self, path: Path | str, kind: str, missing: str) -> None:
        self.path = Path(path)
        self.kind = kind
        self.missing = missing
        super().__init__(f"{self.path}: a {kind} dump, but {missing} is not available")


class DumpLimitError(AnalyzerError):
    """The dump is refused: expanding or reading it would pass one of the
    ``AnalysisLimits`` (``reason`` names which, and the limit)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: refused, {reason}")


class AnalysisCrashedError(AnalyzerError):
    """The child process that analyses a dump (``bounded``) ended without a report or
    an error of its own: killed from outside, or a crash in a native reader."""

    def __init__(self, path: Path | str, detail: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: the analysis process {detail}")
