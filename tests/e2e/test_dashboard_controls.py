"""Standing controls on the dashboard, in Chromium on a farm from `reprofarm up`: the
overview's harness-problems banner and its scenario filter, the agents page's health
column, an agent's latest checks, an admin's "Check now" (and its 409), and the pools'
controls in words.

The problems are made through the real business functions on the farm's own SQLite
database by two agents that exist only there (they never heartbeat): ``wine-1``, in a
negative-control pool, hangs in pipe-close-race; ``arm-7``'s scheduled positive control
passes, i.e. does not hang, so the check fails and the agent is unhealthy. This module
has a farm of its own (the same module-scoped fixtures as test_dashboard.py): the banner
and the extra agents would change what that module's pages show."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from reprofarm_db import builds, claims, health, jobs, leases, pools
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.models import Agent, HealthCheck
from reprofarm_protocol.controls import CheckKind, CheckTrigger, PoolControls
from reprofarm_protocol.jobs import JobCreate, RunReport
from reprofarm_protocol.runs import RunResult, RunStatus
from sqlalchemy.orm import Session, sessionmaker

from tests.e2e import test_dashboard as dashboard
from tests.e2e.test_dashboard import Farm, _nav, _open, _shot
from tests.factories import FAKE_SOURCE, fake_build, register_agent

farm = dashboard.farm  # module-scoped: this module starts a farm and a browser of its own
browser = dashboard.browser
pytestmark = dashboard.pytestmark

LAB = PoolControls(
    canary_at_start=True, positive_control_every_s=86400, positive_control_chance=1e-3
)


@dataclass
class Seeded:
    sessions: sessionmaker[Session]  # the farm's own database
    hang_run: int
    wine: int
    arm: int


def _run_once(
    sessions: sessionmaker[Session], agent_id: int, status: RunStatus, reason: str = ""
) -> int:
    """The agent leases its next run and reports ``status``, as its agent would."""
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        agent = s.get(Agent, agent_id)
        assert agent is not None
        claimed = claims.claim_objects(s, agent=agent, now=now, lease_s=60, avoid_grace_s=30)
        assert claimed is not None, f"{agent.name} leased nothing"
        run, _build, secret = claimed
        report = RunReport(
            result=RunResult(
                status=status,
                reason=reason or ("stalled" if status is RunStatus.HUNG else "duration reached"),
                iterations=10,
                duration_s=1.0,
                cpu_set=[0],
                requested_cpu_set=[0],
                gomaxprocs=1,
                exit_code=None,
            )
        )
        leases.record_result(
            s, agent=agent, run_id=run.id, lease_token=secret, report=report, now=now
        )
        return run.id


@pytest.fixture(scope="module")
def seeded(farm: Farm) -> Iterator[Seeded]:
    engine = make_engine(f"sqlite:///{farm.data / 'reprofarm.sqlite'}")
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        pools.set_(s, name="wine", controls=PoolControls(negative_control=True), by="qa")
        pools.set_(s, name="arm-lab", controls=LAB, by="qa")
        wine, _ = register_agent(s, "wine-1", pools=["wine"], arch="amd64")
        arm, _ = register_agent(s, "arm-7", pools=["arm-lab"])
        bug, _ = jobs.create(
            s,
            spec=JobCreate(scenario="pipe-close-race", pools=["wine"]),
            idempotency_key=None,
            max_runs=100,
        )
        for target in (wine.target, arm.target):
            fake_build(s, target=target)
        builds.mark_ready(s, job=bug, source_sha256=FAKE_SOURCE, now=now)
        check = health.start(
            s,
            agent=arm,
            kind=CheckKind.POSITIVE_CONTROL,
            trigger=CheckTrigger.SCHEDULE,
            controls=LAB,
            now=now,
            max_runs=100,
        )
        builds.mark_ready_if_built(s, job=jobs.get_or_raise(s, job_id=check.job_id))
    hang = _run_once(sessions, wine.id, RunStatus.HUNG)
    _run_once(sessions, arm.id, RunStatus.PASSED)
    with transaction(sessions) as s:
        done = s.get(HealthCheck, check.id)
        assert done is not None
        assert done.outcome == "failed", done.detail
    yield Seeded(sessions=sessions, hang_run=hang, wine=wine.id, arm=arm.id)
    engine.dispose()


def test_the_overview_shows_no_banner_while_nothing_is_flagged(farm, browser):
    problems = farm.call("GET", "/api/v1/harness-problems", farm.viewer).json()
    assert problems["discounted_runs"] == 0, "this test runs before the problems are made"
    page = _open(browser, farm.link(farm.viewer))
    page.wait_for_selector("#jobs")  # drawn after the banner's box, in the same refresh
    assert page.locator("#harness-problems").count() == 0
    page.close()


def test_the_overview_flags_a_negative_control_hang_and_an_unhealthy_agent(farm, seeded, browser):
    page = _open(browser, farm.link(farm.viewer))
    page.wait_for_selector("#harness-problems")
    summary = page.inner_text("#harness-problems .summary")
    assert summary.startswith(
        "Harness problems: 1 hang on negative controls (not counted)"
        " · 1 unhealthy agent (its runs are not counted)"
    ), summary
    hang = page.locator(f"#harness-problems li[data-run='{seeded.hang_run}']")
    assert "pipe-close-race hung on wine-1" in hang.inner_text()
    agent = page.inner_text("#harness-problems li[data-agent='arm-7']")
    assert "the control did not hang" in agent, agent
    _shot(page, "harness-problems")
    # The overview's scenario filter: the hang is pipe-close-race's, the agent stays.
    page.select_option("#f-scenario", "control-deadlock")
    page.wait_for_selector("#harness-problems .summary:not(:has-text('negative controls'))")
    assert page.inner_text("#harness-problems .summary").startswith(
        "Harness problems: 1 unhealthy agent"
    )
    assert page.locator("#harness-problems li[data-run]").count() == 0
    page.select_option("#f-scenario", "pipe-close-race")
    page.click(f"#harness-problems a[href='#/runs/{seeded.hang_run}']")
    page.wait_for_selector("#timeline")
    assert f"/runs/{seeded.hang_run}" in page.url
    page.close()


def test_the_agents_page_shows_health_checks_and_pools_in_words(farm, seeded, browser):
    page = _open(browser, farm.link(farm.viewer))
    _nav(page, "agents")
    page.wait_for_selector("#agents tr[data-agent='arm-7']")
    cell = page.locator("#agents tr[data-agent='arm-7'] .health")
    text = cell.inner_text()
    assert text.startswith("unhealthy since "), text
    assert "did not hang" in text, text
    assert "did not hang" in (cell.get_attribute("title") or "")
    wine = page.inner_text("#agents tr[data-agent='wine-1'] .health")
    assert wine == "unknown", wine
    assert "1 unhealthy" in page.inner_text("#agent-summary")
    lab = page.inner_text("#pools tr[data-pool='arm-lab']")
    assert "canary at start · positive control every 1 d at chance 0.001" in lab, lab
    assert "negative control" in page.inner_text("#pools tr[data-pool='wine']")
    page.select_option("#f-health", "unhealthy")
    page.wait_for_selector("#agents tr[data-agent='wine-1']", state="detached")
    assert page.locator("#agents tbody tr").count() == 1
    page.click("#agents tr[data-agent='arm-7'] a:has-text('arm-7')")
    page.wait_for_selector("#health-checks tr[data-outcome='failed']")
    check = page.inner_text("#health-checks tr[data-outcome='failed']")
    assert "positive-control" in check, check
    assert "did not hang" in check, check
    assert page.locator("#check-now").count() == 0, "a viewer cannot start a check"
    page.close()


def test_an_admin_checks_an_agent_now_and_reads_the_409_of_a_second(farm, seeded, browser):
    page = _open(browser, farm.link(farm.admin))
    page.wait_for_selector("#jobs")
    page.goto(f"{farm.url}/#/agents?agent={seeded.arm}")
    page.wait_for_selector("#health-checks tr[data-outcome='failed']")
    page.click("#check-now")
    page.wait_for_selector("#check-status:has-text('started')")
    page.wait_for_selector("#health-checks tr[data-outcome='running']")
    page.click("#check-now")
    page.wait_for_selector("#check-status .error")
    refused = page.inner_text("#check-status")
    assert refused.startswith("not started: agent 'arm-7' has check "), refused
    assert refused.endswith("running already"), refused
    page.js_errors[:] = [e for e in page.js_errors if "409" not in e]
    _shot(page, "agent-health")
    page.close()


MARKUP = '<img src=x onerror="window.__injected = 1">'


def test_what_an_agent_reports_is_shown_as_text_never_as_markup(farm, seeded, browser):
    """A check's detail quotes the agent's own reason for a failed control run: the banner
    and the agents page must show it as text."""
    started = farm.call(
        "POST", f"/api/v1/agents/{seeded.arm}/health-check", farm.admin, json={"kind": "canary"}
    )
    assert started.status_code in (201, 409), started.text  # 409: the last test's runs still
    _run_once(seeded.sessions, seeded.arm, RunStatus.FAILED, reason=f"hangtest said {MARKUP}")
    page = _open(browser, farm.link(farm.viewer))
    page.wait_for_selector("#harness-problems li[data-agent='arm-7']")
    said = page.inner_text("#harness-problems li[data-agent='arm-7']")
    assert f"the control run ended failed: hangtest said {MARKUP}" in said, said
    page.goto(f"{farm.url}/#/agents?agent={seeded.arm}")
    page.wait_for_selector("#health-checks tr[data-outcome='failed']")
    assert MARKUP in page.inner_text("#agents tr[data-agent='arm-7'] .health")
    assert MARKUP in page.inner_text("#health-checks tbody tr:first-child")
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__injected === undefined")
    page.close()


def _agent_rows(page: Any) -> list[str]:
    """The agents' names in the table, in its order (not its "No agent matches." row)."""
    return page.eval_on_selector_all(
        "#agents tbody tr[data-agent]", "rows => rows.map(r => r.dataset.agent)"
    )


def test_the_agents_page_reads_a_page_at_a_time_and_counts_every_agent(farm, seeded, browser):
    """Three agents (arm-7, the farm's own local-..., wine-1) at two a page: the api
    pages them, and the summary counts all three on either page."""
    page = _open(browser, farm.link(farm.viewer))
    page.wait_for_selector("#jobs")
    page.goto(f"{farm.url}/#/agents?limit=2")
    page.wait_for_selector("#agents tr[data-agent='arm-7']")
    first = _agent_rows(page)
    assert len(first) == 2, first
    assert [first[0], first[1][:6]] == ["arm-7", "local-"], first
    assert page.inner_text("#agent-summary").startswith("3 agents: "), "counted over all"
    pager = page.locator("nav.pager[aria-label='agents pages']")
    assert "1\N{EN DASH}2 of 3 agents" in pager.inner_text()
    pager.locator("button:has-text('next')").click()
    page.wait_for_selector("#agents tr[data-agent='arm-7']", state="detached")
    assert _agent_rows(page) == ["wine-1"]
    assert "3\N{EN DASH}3 of 3 agents" in pager.inner_text()
    assert page.inner_text("#agent-summary").startswith("3 agents: ")
    assert page.url.endswith("#/agents?offset=2&limit=2"), page.url
    pager.locator("button:has-text('previous')").click()
    page.wait_for_selector("#agents tr[data-agent='arm-7']")
    assert _agent_rows(page) == first
    page.close()


def test_the_agents_page_filters_by_a_search_in_the_api(farm, seeded, browser):
    """A name in any case, or a pool's whole name; the summary still counts every agent."""
    page = _open(browser, farm.link(farm.viewer))
    _nav(page, "agents")
    page.wait_for_selector("#agents tr[data-agent='wine-1']")
    page.fill("#f-search", "WINE")
    page.press("#f-search", "Enter")
    page.wait_for_selector("#agents tr[data-agent='arm-7']", state="detached")
    assert _agent_rows(page) == ["wine-1"]
    assert "search=WINE" in page.url, page.url
    assert page.inner_text("#agent-summary").startswith("3 agents: ")
    page.fill("#f-search", "arm-lab")  # arm-7's pool
    page.press("#f-search", "Enter")
    page.wait_for_selector("#agents tr[data-agent='wine-1']", state="detached")
    assert _agent_rows(page) == ["arm-7"]
    page.select_option("#f-state", "needs-reboot")
    page.wait_for_selector("#agents >> text=No agent matches.")
    assert _agent_rows(page) == []
    page.close()


def test_an_agents_checks_show_when_it_is_not_on_the_page(farm, seeded, browser):
    page = _open(browser, farm.link(farm.viewer))
    page.wait_for_selector("#jobs")
    page.goto(f"{farm.url}/#/agents?limit=1&agent={seeded.wine}")
    page.wait_for_selector("#agent-health h2:has-text('Health checks of wine-1')")
    assert _agent_rows(page) == ["arm-7"], "page 1 of 1 a page holds arm-7 alone"
    page.goto(f"{farm.url}/#/agents?agent=999999")
    page.wait_for_selector("#agent-health h2:has-text('No agent #999999')")
    page.close()
