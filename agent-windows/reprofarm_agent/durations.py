"""Go-style durations (``1m30s``, ``500ms``, ``20s``), as hangtest's flags take them."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str, *, field: str = "duration") -> float:
    """Seconds in a Go duration string. ``0`` alone is allowed, as in Go.

    Raises ValueError naming ``field`` for anything else.
    """
    s = text.strip()
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(
                f"{field}: {text!r} is not a duration; write it as Go does, e.g. 20s, 1m30s, 500ms"
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise ValueError(f"{field}: empty duration")
    return total


def format_duration(seconds: float) -> str:
    """Render seconds for hangtest's flags; milliseconds keep it exact enough."""
    return f"{round(seconds * 1000)}ms"
