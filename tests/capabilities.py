"""Pieces of a machine that some tests need and a bare clone may lack, in one list.

Why one list: a test that quietly skips because Chromium or the Wine root is missing looks,
in a green run, exactly like a test that ran. So every such skip goes through ``require``
(or the ``needs`` marker), whose reason names the piece and how to get it; the run ends with
one line saying what was skipped for lack of what; and with ``REPROFARM_TESTS_REQUIRE=all``
(``.ci/run`` sets it) a missing piece fails the test instead, so CI cannot pass by skipping.

Conditions of the platform (a POSIX-only test on Windows, a machine with efficiency cores)
are not capabilities: no install step brings them, and they keep plain ``skipif`` markers.

This module imports only the standard library and pytest: agent-only installs (the Windows
runners' workflow) load it too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STRICT_VARIABLE = "REPROFARM_TESTS_REQUIRE"
WINE_ROOT = Path("/var/cache/reprofarm/wine-trixie")
_REASON = re.compile(r"needs ([a-z0-9-]+) \(")


def public_minidumps() -> Path:
    """The public Windows minidumps (breakpad, rust-minidump test data with their
    licences): ``shared/fixtures/minidumps`` beside the checkout, or where
    ``REPROFARM_PUBLIC_MINIDUMPS`` points."""
    named = os.environ.get("REPROFARM_PUBLIC_MINIDUMPS")
    return Path(named) if named else ROOT.parent / "shared" / "fixtures" / "minidumps"


def wine_minidumps() -> Path:
    """Minidumps of hangtest.exe hung under Wine (agent-windows/wine/make-minidumps.sh)."""
    named = os.environ.get("REPROFARM_WINE_MINIDUMPS")
    return Path(named) if named else Path("/var/cache/reprofarm/wine-minidumps")


def chromium_path() -> str | None:
    """Debian's Chromium, the only browser Playwright can drive here."""
    return shutil.which("chromium")


def postgres_cluster() -> str | None:
    """The version of the local Debian Postgres cluster ``pg_ctlcluster`` can restart."""
    if shutil.which("pg_ctlcluster") is None:
        return None
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*") if p.is_dir())
    return versions[-1] if versions else None


def _uv_works() -> bool:
    uv = shutil.which("uv")
    if uv is None:
        return False
    done = subprocess.run([uv, "--version"], capture_output=True, check=False, timeout=30)
    return done.returncode == 0


@dataclass(frozen=True, slots=True)
class Capability:
    """A piece a test may need: how to tell it is here, and how a person gets it."""

    name: str
    what: str
    present: Callable[[], bool]
    how: str


CAPABILITIES = {
    c.name: c
    for c in (
        Capability(
            "public-minidumps",
            "the public Windows minidump fixtures",
            lambda: (public_minidumps() / "rust-minidump-invalid-parameter.dmp").is_file(),
            "put shared/fixtures/minidumps beside the checkout, or set "
            "REPROFARM_PUBLIC_MINIDUMPS to a folder holding them",
        ),
        Capability(
            "chromium",
            "Debian's Chromium",
            lambda: chromium_path() is not None,
            "apt-get install chromium",
        ),
        Capability(
            "wine-root",
            f"the Debian trixie Wine root at {WINE_ROOT}",
            lambda: (WINE_ROOT / "usr").is_dir(),
            "bash agent-windows/wine/check-hangtest.sh builds it (docs/wine.md)",
        ),
        Capability(
            "wine-minidumps",
            "minidumps of hangtest.exe hung under Wine",
            lambda: any(wine_minidumps().glob("go*/hangtest-go*-full.dmp")),
            "bash agent-windows/wine/make-minidumps.sh DIR 1.27, then set "
            "REPROFARM_WINE_MINIDUMPS=DIR (docs/wine.md)",
        ),
        Capability(
            "gcore",
            "gdb's gcore, which takes core dumps on Linux",
            lambda: shutil.which("gcore") is not None,
            "apt-get install gdb",
        ),
        Capability(
            "objdump",
            "binutils' objdump, an independent reader of PE exports",
            lambda: shutil.which("objdump") is not None,
            "apt-get install binutils",
        ),
        Capability(
            "postgres-cluster",
            "a local Postgres cluster that pg_ctlcluster can stop and start",
            lambda: postgres_cluster() is not None,
            "apt-get install postgresql (a Debian cluster serving 127.0.0.1:5432)",
        ),
        Capability(
            "uv",
            "uv, which builds and installs the agent's wheels",
            _uv_works,
            "python3 -m pip install uv",
        ),
    )
}


@cache
def _present(name: str) -> bool:
    return CAPABILITIES[name].present()


def strict() -> bool:
    """Whether a missing piece fails the test (CI) instead of skipping it."""
    return os.environ.get(STRICT_VARIABLE, "").strip().lower() in {"all", "1", "true", "yes"}


def missing(name: str) -> bool:
    """True when the piece is not on this machine (for ``skipif``-style decisions made
    outside a test, such as parametrisation)."""
    return not _present(name)


def require(name: str) -> None:
    """Skip the running test, with a reason that names the piece and how to get it, when
    the piece is missing; fail it instead in strict mode."""
    if name not in CAPABILITIES:
        raise KeyError(f"unknown capability {name!r}: known are {sorted(CAPABILITIES)}")
    if _present(name):
        return
    capability = CAPABILITIES[name]
    reason = f"needs {name} ({capability.what}): {capability.how}"
    if strict():
        pytest.fail(f"{reason}; {STRICT_VARIABLE} is set, so a missing piece is a failure")
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs(*capabilities): the test needs these pieces of the machine "
        f"(tests/capabilities.py lists them: {', '.join(CAPABILITIES)})",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("needs"):
        for name in marker.args:
            require(name)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line: what was skipped for lack of what (or that nothing was)."""
    lacking: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
        found = _REASON.search(str(reason))
        if found:
            lacking[found.group(1)] += 1
    if not lacking:
        terminalreporter.write_line("capability skips: none")
        return
    listed = "; ".join(
        f"{name} ({count} test{'s' if count > 1 else ''}: {CAPABILITIES[name].how})"
        for name, count in sorted(lacking.items())
        if name in CAPABILITIES
    )
    terminalreporter.write_line(f"capability skips, for lack of: {listed}")
