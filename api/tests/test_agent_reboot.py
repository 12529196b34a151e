"""The reboot policy with the real agent service and the real app: a process
that survived kill marks the machine, the agent delivers the evidence, runs the
reboot command (a harmless one here) only if allowed, and its next registration
clears needs_reboot and records the reboot that the agents page shows."""

import sys

import pytest
from reprofarm_agent.client import ApiClient
from reprofarm_agent.errors import RebootStartedError
from reprofarm_agent.platform import current_platform
from reprofarm_agent.service import AgentService
from reprofarm_agent.settings import AgentSettings
from reprofarm_protocol.runs import RunResult, RunStatus

from tests.api_calls import make_build, submit


def service(api, tmp_path, enrollment, **settings):
    agent_settings = AgentSettings(
        work_dir=tmp_path / "agent", cache_dir=tmp_path / "cache", **settings
    )
    return AgentService(
        client=ApiClient(api.client, enrollment),
        platform=current_platform(agent_settings),
        settings=agent_settings,
        name="stuck-1",
        pools=["lab"],
        lease_wait_s=0,
        sleep=lambda _s: None,
    )


def unkillable_run(api, tmp_path, agent):
    agent.register()
    assert submit(api, pools=["lab"]).status_code == 201
    (row,) = api.client.get("/api/v1/agents", headers=api.headers(api.admin)).json()
    make_build(api, tmp_path / "hangtest", target=row["target"])
    leased = agent.lease()
    result = RunResult(
        status=RunStatus.HUNG,
        reason="stalled; could not kill: pid 42 survived SIGKILL (reboot this machine)",
        iterations=10,
        duration_s=3.0,
        cpu_set=[0],
        requested_cpu_set=[0],
        gomaxprocs=1,
        exit_code=None,
        unkillable=True,
    )
    agent.spool_result(leased, result)
    return leased


def agent_row(api):
    (row,) = api.client.get("/api/v1/agents", headers=api.headers(api.admin)).json()
    return row


def test_an_allowed_reboot_runs_after_delivery_and_is_reported_at_registration(api, tmp_path):
    enrollment = api.token("agent")
    flag = tmp_path / "rebooted"
    command = [sys.executable, "-c", f"open({str(flag)!r}, 'w').close()"]
    agent = service(api, tmp_path, enrollment, reboot_when_needed=True, reboot_command=command)
    leased = unkillable_run(api, tmp_path, agent)
    with pytest.raises(RebootStartedError):
        agent.work_once()  # delivers the result, then reboots
    assert flag.exists()
    assert agent_row(api)["needs_reboot"] is True
    run = api.client.get(f"/api/v1/runs/{leased.run_id}", headers=api.headers(api.admin)).json()
    assert run["status"] == "hung"  # the evidence went first
    back = service(api, tmp_path, enrollment, reboot_when_needed=True, reboot_command=command)
    back.register()
    row = agent_row(api)
    assert (row["needs_reboot"], row["reboots"]) == (False, 1)
    assert row["last_reboot_at"] is not None
    assert not (tmp_path / "agent" / "reboot.json").exists()


def test_without_permission_the_agent_never_reboots_and_a_restart_clears_nothing(api, tmp_path):
    enrollment = api.token("agent")
    flag = tmp_path / "rebooted"
    command = [sys.executable, "-c", f"open({str(flag)!r}, 'w').close()"]
    agent = service(api, tmp_path, enrollment, reboot_command=command)
    unkillable_run(api, tmp_path, agent)
    assert agent.work_once() is False  # delivers, does not lease, does not reboot
    assert not flag.exists()
    service(api, tmp_path, enrollment).register()  # a plain restart of the agent
    assert agent_row(api)["needs_reboot"] is True
    assert agent_row(api)["reboots"] == 0


def test_a_failing_reboot_command_is_reported_and_not_retried(api, tmp_path):
    enrollment = api.token("agent")
    command = [sys.executable, "-c", "raise SystemExit(5)"]
    agent = service(api, tmp_path, enrollment, reboot_when_needed=True, reboot_command=command)
    unkillable_run(api, tmp_path, agent)
    assert agent.work_once() is False
    assert agent.settings.reboot_when_needed is False
    assert not (tmp_path / "agent" / "reboot.json").exists()
