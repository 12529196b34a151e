"""The hangtest build every benchmark runs: native target, bundled Go."""

from __future__ import annotations

from pathlib import Path

from reprofarm_agent.build import build_hangtest, native_target
from reprofarm_agent.platform import current_platform
from reprofarm_agent.settings import AgentSettings
from reprofarm_agent.toolchains import bundled_toolchain


def native_hangtest() -> Path:
    settings = AgentSettings()
    facts = current_platform(settings).probe()
    target = native_target(facts.os, facts.arch)
    return Path(build_hangtest(bundled_toolchain(), target, settings.cache_dir).path)
