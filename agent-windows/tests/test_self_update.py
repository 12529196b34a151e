"""Which agents update themselves: only one started from a managed install. The
embedded agent of `reprofarm up`, and any agent run from a checkout, never do,
even when REPROFARM_INSTALL_ROOT is set by mistake. The update itself, with
real wheels, venvs and api, is tests/e2e/test_agent_self_update.py."""

from __future__ import annotations

from importlib.metadata import version

import pytest
from reprofarm_agent.install_layout import InstallLayout
from reprofarm_agent.self_update import managed_updater
from reprofarm_agent.settings import AgentSettings


def test_an_agent_without_an_install_root_never_updates_itself(tmp_path):
    assert managed_updater(AgentSettings(install_root=None, work_dir=tmp_path)) is None


def test_an_agent_not_running_from_the_install_never_updates_itself(tmp_path):
    # This test runs from the workspace's environment, as `reprofarm up`'s agent does.
    layout = InstallLayout(tmp_path)
    layout.venv(version("reprofarm-agent")).mkdir(parents=True)
    layout.write_pointer("current", version("reprofarm-agent"))
    assert not layout.runs_from(version("reprofarm-agent"))
    assert managed_updater(AgentSettings(install_root=tmp_path, work_dir=tmp_path)) is None


def test_pointers_are_versions_and_nothing_else(tmp_path):
    layout = InstallLayout(tmp_path)
    layout.write_pointer("current", "0.1.0+src0123456789ab")
    assert layout.read_pointer("current") == "0.1.0+src0123456789ab"
    (tmp_path / "known-good").write_text("\ufeff0.2.0\r\n", encoding="utf-8")  # PowerShell's
    assert layout.read_pointer("known-good") == "0.2.0"
    (tmp_path / "current").write_text("..\\..\\Windows\n")
    with pytest.raises(ValueError, match="not a release version"):
        layout.read_pointer("current")  # a pointer outside venvs/
