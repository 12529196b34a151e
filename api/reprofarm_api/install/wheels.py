"""The agent's wheels, built from this repository's sources once per version, and
read back as a release (file names, sha256, sizes).

Version: the agent package's own version plus a local label made from the
sha256 of the sources that go into the wheels (``0.1.0+src1a2b3c4d5e6f``). The
project does not bump its version for every change, and agents update when the
version differs: with the label, any change to the agent or protocol sources is
a new release, and the same sources always give the same version.

What: ``agent-windows/`` (reprofarm-agent) and the members of this repository
it depends on, found from the pyprojects (today protocol/ and analyzer/), each
with the files its wheel is built from (hatch's ``packages`` and
``force-include``).

Build: ``uv build --wheel`` (the packages' own backend, hatchling) of a copy of
those members whose pyprojects carry that version. The copy also keeps the
build out of the working tree. Concurrency: api processes
may build at once; each builds in a private temporary folder beside the cache
and renames its result to ``<cache>/<version>``: a folder of that name is always
complete, the first rename wins and the others discard their copy. Within one
process a lock keeps requests from building the same thing twice.

Hatchling writes reproducible wheels (fixed timestamps), so two builds of the
same sources have the same sha256.

Pins: beside the wheels, ``requirements.txt`` holds every third-party
dependency of the agent at the version ``uv.lock`` chose, with its sha256s
(``uv export``); the release serves it and agents install it with
``--require-hashes``, so a lab machine gets exactly what CI tested and nothing
an index could swap. ``uv.lock`` is one of the sources the version is made
from: new pins are a new release.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprofarm_protocol.release import (
    AGENT_PACKAGE,
    WHEEL_FILENAME,
    AgentRelease,
    ReleaseFile,
    wheel_url,
)

_AGENT = "reprofarm-agent"
_PREFIX = "reprofarm-"
_SKIPPED_SUFFIXES = (".pyc", ".pyo", ".exe", ".whl")
_BUILD_TIMEOUT_S = 600
_STALE_BUILD_S = 3600
_VERSION_LINE = re.compile(r'^version\s*=\s*"([^"]+)"\s*$', re.MULTILINE)
_build_lock = threading.Lock()
REQUIREMENTS = "requirements.txt"
_LOCK_FILE = "uv.lock"


class ReleaseUnavailableError(Exception):
    """No release can be served: the sources or the build tool are missing, the
    build failed, or an operator's folder does not hold exactly one wheel of
    each package. The message says which, and what to do."""


@dataclass(frozen=True)
class _Member:
    folder: str  # relative to the repository
    parts: tuple[str, ...]  # what its wheel is built from, relative to the folder
    requires: tuple[str, ...]  # the reprofarm-* distributions it depends on


def _table(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        data = data.get(key, {})
    return data


def _members(root: Path) -> dict[str, _Member]:
    """Every package of the repository: distribution name -> member."""
    members: dict[str, _Member] = {}
    for pyproject in sorted(root.glob("*/pyproject.toml")):
        data = tomllib.loads(pyproject.read_text())
        project = _table(data, "project")
        wheel = _table(data, "tool", "hatch", "build", "targets", "wheel")
        if "name" not in project or not wheel.get("packages"):
            continue
        requires = tuple(
            name
            for spec in project.get("dependencies", [])
            if (name := re.split(r"[\s\[<>=!~;@]", spec, maxsplit=1)[0]).startswith(_PREFIX)
        )
        parts = tuple(wheel["packages"]) + tuple(_table(wheel, "force-include"))
        members[project["name"]] = _Member(pyproject.parent.name, parts, requires)
    return members


def _release_members(root: Path) -> list[_Member]:
    """The agent and what it needs of the repository, dependencies first."""
    members = _members(root)
    ordered: list[_Member] = []

    def visit(name: str) -> None:
        if name not in members:
            raise ReleaseUnavailableError(
                f"agent sources: no package {name} under {root}; set REPROFARM_AGENT_SOURCE_DIR "
                "to the repository, or REPROFARM_AGENT_WHEELS_DIR to a folder of built wheels"
            )
        member = members[name]
        if member not in ordered:
            for dependency in member.requires:
                visit(dependency)
            ordered.append(member)

    visit(_AGENT)
    return ordered


def _source_files(root: Path) -> list[Path]:
    """The files the release's wheels are built from, relative to ``root``, sorted."""
    files: list[Path] = []
    for member in _release_members(root):
        files.append(Path(member.folder) / "pyproject.toml")
        for part in member.parts:
            for path in (root / member.folder / part).rglob("*"):
                relative = path.relative_to(root)
                if (
                    path.is_file()
                    and not any(p.startswith(".") or p == "__pycache__" for p in relative.parts)
                    and path.suffix not in _SKIPPED_SUFFIXES
                ):
                    files.append(relative)
    if (root / _LOCK_FILE).is_file():
        files.append(Path(_LOCK_FILE))
    return sorted(files, key=lambda p: p.as_posix())


def source_version(root: Path) -> str:
    """The release version of the sources under ``root`` (see the module docstring)."""
    digest = hashlib.sha256()
    for relative in _source_files(root):
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256((root / relative).read_bytes()).digest())
    agent = _release_members(root)[-1]
    base = tomllib.loads((root / agent.folder / "pyproject.toml").read_text())["project"]["version"]
    # Letters first: a local label of digits only would be normalised (leading zeros dropped).
    return f"{base.split('+')[0]}+src{digest.hexdigest()[:12]}"


def sources_stamp(root: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when the release's sources may have: each source file's path,
    size and mtime. Only a walk and stats, no reading, so it is cheap to take on
    every release request; the sources are hashed again only when it moves."""
    stamp = []
    for relative in _source_files(root):
        info = (root / relative).stat()
        stamp.append((relative.as_posix(), info.st_size, info.st_mtime_ns))
    return tuple(stamp)


def folder_stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """The same for an operator's folder of wheels (resolved: it may be a link
    switched to another folder)."""
    resolved = folder.resolve()
    if not resolved.is_dir():
        return ()
    return tuple(
        (str(path), info.st_size, info.st_mtime_ns)
        for path in sorted(resolved.iterdir())
        if path.is_file() and (info := path.stat())
    )


def _stamp(pyproject: Path, label: str) -> None:
    """Give a copied pyproject the release's local version label."""
    text = pyproject.read_text()
    match = _VERSION_LINE.search(text)
    if match is None:
        raise ReleaseUnavailableError(f'{pyproject}: no `version = "..."` line to stamp')
    stamped = f"{match.group(1).split('+')[0]}+{label}"
    pyproject.write_text(text[: match.start(1)] + stamped + text[match.end(1) :])


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        raise ReleaseUnavailableError(
            "building the agent wheels needs `uv` on the api's PATH (pip install uv); or build "
            "them elsewhere and set REPROFARM_AGENT_WHEELS_DIR"
        )
    return uv


def _build_into(root: Path, version: str, out: Path, work: Path) -> None:
    label = version.split("+", 1)[1]
    copy = work / "src"
    for relative in _source_files(root):
        target = copy / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / relative, target)
    folders = [copy / member.folder for member in _release_members(root)]
    for folder in folders:
        _stamp(folder / "pyproject.toml", label)
    uv = _uv()
    builds = [
        subprocess.Popen(
            [uv, "build", "--wheel", "--quiet", "--out-dir", str(out), str(folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for folder in folders
    ]
    for build in builds:
        output, _ = build.communicate(timeout=_BUILD_TIMEOUT_S)
        if build.returncode != 0:
            raise ReleaseUnavailableError(
                f"uv build failed ({build.returncode}): {output.decode(errors='replace')[-2000:]}"
            )
    for stray in out.glob(".*"):  # uv drops a .gitignore into its output folder
        stray.unlink()
    export_requirements(root, out / REQUIREMENTS)


def export_requirements(root: Path, to: Path) -> None:
    """The agent's third-party dependencies as ``uv.lock`` pins them, hashes
    included (``uv export``; the repository's own packages are the wheels)."""
    if not (root / _LOCK_FILE).is_file():
        raise ReleaseUnavailableError(
            f"agent sources: {root / _LOCK_FILE} is missing; the release pins the agent's "
            "dependencies from it"
        )
    argv = [_uv(), "--directory", str(root), "export", "--frozen", "--package", _AGENT]
    argv += ["--no-dev", "--no-emit-workspace", "--no-header", "--no-annotate"]
    argv += ["--format", "requirements-txt", "--output-file", str(to.resolve())]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S)
    if done.returncode != 0:
        raise ReleaseUnavailableError(
            f"uv export failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}"
        )


def build(root: Path, cache: Path) -> Path:
    """The folder holding the wheels of the sources under ``root``, built into
    ``cache/<version>`` unless it is there already."""
    version = source_version(root)
    final = cache / version
    if final.is_dir():
        return final
    with _build_lock:
        if final.is_dir():
            return final
        cache.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(cache)
        work = cache / f".build-{uuid.uuid4().hex}"
        try:
            out = work / "out"
            out.mkdir(parents=True)
            _build_into(root, version, out, work)
            try:
                out.rename(final)
            except OSError:
                if not final.is_dir():  # not another process winning the race: a real error
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def _remove_stale_builds(cache: Path) -> None:
    """Temporary folders of builds whose process died (an hour is far past any build)."""
    for stale in cache.glob(".build-*"):
        if time.time() - stale.stat().st_mtime > _STALE_BUILD_S:
            shutil.rmtree(stale, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_release(folder: Path) -> AgentRelease:
    """The release in ``folder``, unsigned: one reprofarm_agent wheel and at most
    one wheel of each other reprofarm package (anything else there is ignored),
    and ``requirements.txt``; the version is the agent wheel's. It reads and
    hashes every file: callers cache it (``service.Releases``)."""
    if not folder.is_dir():
        raise ReleaseUnavailableError(f"agent wheels: {folder} is not a folder")
    found: dict[str, list[tuple[Path, str]]] = {AGENT_PACKAGE: []}
    for path in sorted(folder.iterdir()):
        match = WHEEL_FILENAME.match(path.name)
        if match and path.is_file():
            found.setdefault(match.group(1), []).append((path, match.group(2)))
    for name, wheels in found.items():
        if len(wheels) != 1:
            listed = ", ".join(p.name for p, _ in wheels) or "none"
            raise ReleaseUnavailableError(
                f"agent wheels: {folder} must hold exactly one {name} wheel (found: {listed})"
            )
    order = sorted(found, key=lambda name: (name == AGENT_PACKAGE, name))  # the agent last
    files = [
        ReleaseFile(
            filename=path.name,
            sha256=_sha256(path),
            bytes=path.stat().st_size,
            url=wheel_url(path.name),
        )
        for name in order
        for path, _ in found[name]
    ]
    pins = folder / REQUIREMENTS
    if not pins.is_file():
        raise ReleaseUnavailableError(
            f"agent wheels: {folder} holds no {REQUIREMENTS} (the agent's dependencies, pinned "
            "with hashes); build the folder with `python -m reprofarm_api.install.wheels`"
        )
    return AgentRelease(
        version=found[AGENT_PACKAGE][0][1],
        files=files,
        requirements=pins.read_text(encoding="utf-8"),
    )


def main() -> None:
    """``python -m reprofarm_api.install.wheels SOURCE OUT``: build the release of
    the repository at SOURCE into OUT/<version> (the controller image does this
    at build time) and print that folder."""
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m reprofarm_api.install.wheels SOURCE OUT")
    try:
        print(build(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()))
    except ReleaseUnavailableError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
