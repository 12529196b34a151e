"""Fixtures shared by every package's tests: a real hangtest build, and (in
tests/fixtures.py) a fresh Postgres database and Redis key space."""

from __future__ import annotations

from pathlib import Path

import pytest
from reprofarm_agent.build import build_hangtest, native_target
from reprofarm_agent.platform import current_platform
from reprofarm_agent.settings import AgentSettings
from reprofarm_agent.toolchains import bundled_toolchain
from reprofarm_protocol.builds import BuildManifest

pytest_plugins = ["tests.fixtures", "tests.capabilities"]


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reprofarm-cache")


@pytest.fixture(scope="session")
def hangtest_build(build_cache: Path) -> BuildManifest:
    facts = current_platform(AgentSettings()).probe()
    return build_hangtest(bundled_toolchain(), native_target(facts.os, facts.arch), build_cache)


@pytest.fixture(scope="session")
def hangtest_binary(hangtest_build: BuildManifest) -> Path:
    return Path(hangtest_build.path)
