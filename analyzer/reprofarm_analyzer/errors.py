"""The analyzer's exceptions.

Every error the analyzer raises on purpose derives from ``AnalyzerError``, so the worker and
the CLI can turn any of them into one message at their edge::

    AnalyzerError
    ├── NotADumpError             the file is neither a goroutine dump, a minidump nor a core
    └── AnalyzerUnavailableError  the file is a dump, but the module that reads its kind is
                                  not installed (a process-dump reader of a later release)

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
