"""The OS behind one interface (``Platform``), chosen once at start-up.

Nothing above this package tests ``sys.platform``.
"""

from __future__ import annotations

import sys

from reprofarm_agent.platform.base import KillOutcome, Platform, Spawned
from reprofarm_agent.settings import AgentSettings

__all__ = ["KillOutcome", "Platform", "Spawned", "current_platform"]


def current_platform(settings: AgentSettings) -> Platform:
    if sys.platform == "win32":
        from reprofarm_agent.platform.windows import WindowsPlatform

        return WindowsPlatform(procdump=settings.procdump_path)
    else:
        from reprofarm_agent.platform.linux import LinuxPlatform

        return LinuxPlatform()
