"""Reproducible, content-addressed hangtest builds.

A build is keyed by (Go version, target, source hash). The binary is stored
under its own sha256 (``<cache>/builds/<sha256>/``) with its manifest beside
it, and an index maps the key to the hash, so a second request is a lookup.
``-trimpath``, an empty build id and no VCS stamping make the same inputs give
the same bytes on any machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from importlib.metadata import version as package_version
from pathlib import Path

from reprofarm_protocol.builds import BuildManifest

from reprofarm_agent.artifacts import sha256_file
from reprofarm_agent.binaries import read_binary_target
from reprofarm_agent.errors import BuildError
from reprofarm_agent.toolchains import Toolchain

TARGETS = ("windows/amd64", "windows/arm64", "linux/amd64", "linux/arm64")


def hangtest_source_dir() -> Path:
    """hangtest's Go sources: shipped inside the wheel, or beside the package
    in a checkout of the repository."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "hangtest_src", here.parent / "hangtest"):
        if (candidate / "go.mod").exists():
            return candidate
    raise BuildError("hangtest sources not found next to the agent package")


def _source_files(src: Path) -> list[Path]:
    files = [p for p in src.glob("*.go") if not p.name.endswith("_test.go")]
    return sorted([*files, src / "go.mod"])


def source_sha256(src: Path) -> str:
    """Hash of what goes into the binary: names and contents of the non-test sources."""
    digest = hashlib.sha256()
    for f in _source_files(src):
        digest.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def hangtest_version(src_hash: str) -> str:
    return f"{package_version('reprofarm-agent')}+src.{src_hash[:12]}"


def go_env(toolchain: Toolchain, cache_dir: Path, target: str | None = None) -> dict[str, str]:
    """Environment for running this toolchain offline and deterministically,
    writing only under ``cache_dir`` (never under $HOME).

    Left alone, ``go`` writes its build cache, module cache, GOPATH, its env
    file and telemetry counters under the user's home. GOTELEMETRY is not read
    from the environment (``go env`` reports the mode file's value), so the
    telemetry mode is turned off with the mode file inside a private config
    directory (``XDG_CONFIG_HOME`` on Unix, ``APPDATA`` on Windows), which is
    also where GOTELEMETRYDIR and the default GOENV live.
    """
    go_dir = cache_dir / "go"
    config = go_dir / "config"
    _telemetry_off(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO") and k != "CGO_ENABLED"}
    env.update(
        GOROOT=str(toolchain.goroot),
        GOTOOLCHAIN="local",  # never download another toolchain
        GOPROXY="off",  # hangtest uses only the standard library
        GOFLAGS="-mod=mod",
        GOCACHE=str(cache_dir / "gocache"),
        GOPATH=str(cache_dir / "gopath"),
        GOMODCACHE=str(cache_dir / "gopath" / "pkg" / "mod"),
        GOENV=str(config / "go" / "env"),
        GOTELEMETRY="off",  # documents the intent; the mode file is what go obeys
        XDG_CONFIG_HOME=str(config),
        APPDATA=str(config),
        CGO_ENABLED="0",
    )
    if target:
        env["GOOS"], env["GOARCH"] = target.split("/")
    return env


def _telemetry_off(config: Path) -> None:
    """Go's telemetry mode file (golang.org/x/telemetry: ``<config>/go/telemetry/mode``)."""
    mode = config / "go" / "telemetry" / "mode"
    if mode.exists():
        return
    mode.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: a concurrent build must never read a half-written mode file.
    tmp = mode.with_name(f"mode.{os.getpid()}.tmp")
    tmp.write_text("off")
    tmp.replace(mode)


_TMP_PREFIX = ".build-"
# No build takes this long: an older temporary folder belongs to a build whose
# process was killed (a worker or agent killed mid-build cannot clean up).
ABANDONED_AFTER_S = 6 * 3600


def forget_abandoned_builds(builds: Path, now: float | None = None) -> list[Path]:
    """Delete the temporary folders of builds killed half-way; returns them."""
    now = time.time() if now is None else now
    abandoned = [
        d
        for d in builds.glob(_TMP_PREFIX + "*")
        if d.is_dir() and now - d.stat().st_mtime > ABANDONED_AFTER_S
    ]
    for d in abandoned:
        shutil.rmtree(d, ignore_errors=True)
    return abandoned


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise BuildError(f"target: {target!r} is not one of {', '.join(TARGETS)}")


def _index_path(cache_dir: Path, go_version: str, target: str, src_hash: str) -> Path:
    key = hashlib.sha256(f"{go_version}|{target}|{src_hash}".encode()).hexdigest()
    return cache_dir / "builds" / "index" / f"{key}.json"


def cached_build(
    cache_dir: Path, go_version: str, target: str, src_hash: str
) -> BuildManifest | None:
    index = _index_path(cache_dir, go_version, target, src_hash)
    if not index.exists():
        return None
    manifest = BuildManifest.model_validate_json(index.read_text())
    binary = Path(manifest.path)
    if not binary.exists() or sha256_file(binary) != manifest.sha256:
        return None  # damaged cache entry: build again
    return manifest


def build_hangtest(toolchain: Toolchain, target: str, cache_dir: Path) -> BuildManifest:
    """Build hangtest for ``target`` with ``toolchain``, or return the cached build."""
    _check_target(target)
    src = hangtest_source_dir()
    src_hash = source_sha256(src)
    if cached := cached_build(cache_dir, toolchain.version, target, src_hash):
        return cached
    exe = "hangtest.exe" if target.startswith("windows/") else "hangtest"
    version = hangtest_version(src_hash)
    builds = cache_dir / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    forget_abandoned_builds(builds)
    with tempfile.TemporaryDirectory(dir=builds, prefix=_TMP_PREFIX) as tmp:
        out = Path(tmp) / exe
        cmd = [
            str(toolchain.go),
            "build",
            "-trimpath",
            "-buildvcs=false",
            "-ldflags",
            f"-buildid= -X main.version={version}",
            "-o",
            str(out),
            ".",
        ]
        done = subprocess.run(
            cmd,
            cwd=src,
            env=go_env(toolchain, cache_dir, target),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BuildError(
                f"go build for {target} with {toolchain.version} failed:\n{done.stderr.strip()}"
            )
        machine = read_binary_target(out)
        if machine != target:
            raise BuildError(f"go build for {target} produced a {machine} binary")
        digest = sha256_file(out)
        final_dir = builds / digest
        final_dir.mkdir(exist_ok=True)
        final = final_dir / exe
        if not final.exists() or sha256_file(final) != digest:
            # Missing, or damaged on disk (a cached binary is checked on read
            # too): the fresh build replaces it, atomically (same folder tree).
            out.replace(final)
    manifest = BuildManifest(
        go_version=toolchain.version,
        target=target,
        source_sha256=src_hash,
        sha256=digest,
        bytes=final.stat().st_size,
        path=str(final),
        hangtest_version=version,
        fix_present=toolchain.fix_present,
        toolchain=str(toolchain.goroot),
        binary_machine=machine,
    )
    text = manifest.model_dump_json(indent=2)
    (final_dir / "manifest.json").write_text(text)
    index = _index_path(cache_dir, toolchain.version, target, src_hash)
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(text)
    return manifest


def native_target(os_name: str, arch: str) -> str:
    """The target of native binaries for a probed machine (its native arch,
    not the emulated one an x64 Python on ARM64 would report)."""
    return f"{os_name}/{arch}"
