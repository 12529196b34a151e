"""The dashboard in a real headless Chromium on a farm from `reprofarm up` with real
runs: every page reached by clicking from `/`, live updates without reloads, the
hangs of a control job in the right cells, a dump downloaded with its sha256, the
runs a page shows downloaded as CSV and Parquet, the submit form's dry run, cancel
for a submitter but not for a viewer, and a search study's page reaching its decision
live.

One farm and one browser serve the whole module (starting a farm costs seconds);
each test opens its own page. Screenshots of every page (1400x900) go to
test-artifacts/screenshots/ (git ignores it; CI keeps it)."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.chromium import launch
from tests.e2e.farm import free_port, wait_for

BIN = Path(sys.executable).parent
SCREENSHOTS = Path(
    os.environ.get(
        "REPROFARM_SCREENSHOTS",
        Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots",
    )
)
CONTROL_JOB = {
    "scenario": "control-deadlock",
    "cpus": [1, 2],
    "repeats": 1,
    "duration_s": 5,
    "stall_timeout_s": 2,
    "process_dumps": 0,
}

SEARCH_STUDY = {  # the control decides both cells in a few runs: 1e-3 hangs, 0 never does
    "kind": "search",
    "scenario": "control-deadlock",
    "control_chance": [0, 1e-3],
    "duration_s": 1,
    "stall_timeout_s": 0.5,
    "process_dumps": 0,
    "lo": 0.05,
    "hi": 0.5,
    "budget": {"runs": 40},
}

VERIFY_STUDY = {  # a fix of the control: the baseline always hangs, the candidate never
    "kind": "verify",
    "scenario": "control-deadlock",
    "baseline": {"control_chance": 1e-3},
    "candidate": {"control_chance": 0},
    "margin": 1,
    "duration_s": 1,
    "stall_timeout_s": 0.5,
    "process_dumps": 0,
    "budget": {"runs": 40},
}


class Farm:
    def __init__(self, url: str, viewer: str, submitter: str, admin: str, data: Path) -> None:
        self.url, self.viewer, self.submitter, self.admin = url, viewer, submitter, admin
        self.data = data  # the farm's data dir: its SQLite database is reprofarm.sqlite

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            **kwargs,
        )

    def link(self, token: str) -> str:
        return f"{self.url}/#token={token}"


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    root = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    data = root / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPROFARM_")}
    process = subprocess.Popen(
        [str(BIN / "reprofarm"), "up", "--port", str(port), "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        start_new_session=True,
        cwd=root,
    )
    assert process.stdout is not None
    banner = process.stdout.readline()
    assert "reprofarm is up" in banner, banner + (process.stdout.read() if process.poll() else "")
    url = f"http://127.0.0.1:{port}"
    viewer = banner.split("#token=", 1)[1].split()[0]
    admin = (data / "admin-token").read_text().strip()
    made = httpx.post(
        f"{url}/api/v1/tokens",
        headers={"Authorization": f"Bearer {admin}"},
        json={"name": "qa", "role": "submitter"},
    )
    assert made.status_code == 201, made.text
    yield Farm(url, viewer, made.json()["token"], admin, data)
    os.killpg(process.pid, signal.SIGINT)
    rest = process.communicate(timeout=60)[0]
    for log in sorted((data / "logs").glob("*.log")):
        print(f"===== {log.name}\n{log.read_text(errors='replace')[-2000:]}")
    assert "stopped" in rest


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def control_job(farm: Farm, browser: Any) -> Iterator[dict[str, Any]]:
    """The overview is open before the job exists; the job is submitted and the
    page must show it, and its hangs, without a reload."""
    page = _open(browser, farm.link(farm.viewer))
    page.wait_for_selector("#jobs")
    page.evaluate("window.__notReloaded = true")
    r = farm.call("POST", "/api/v1/jobs", farm.submitter, json=CONTROL_JOB)
    assert r.status_code == 201, r.text
    job = r.json()
    yield {"job": job, "overview": page}
    page.close()


def _open(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.js_errors = errors
    page.goto(url)
    return page


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    assert not [e for e in page.js_errors if "401" not in e], page.js_errors


def _nav(page: Any, name: str) -> None:
    page.click(f"header nav a[data-nav='{name}']")


pytestmark = pytest.mark.needs("chromium")  # decided before the farm starts


def test_a_control_job_appears_live_and_its_hangs_turn_its_cells_red(farm, control_job):
    page, job_id = control_job["overview"], control_job["job"]["id"]
    page.wait_for_selector(f"#jobs a[href='#/jobs/{job_id}']", timeout=30_000)
    # Both cells of this machine's row: 1 and 2 CPUs, one hung run each.
    for cpus in (1, 2):
        page.wait_for_selector(
            f"#rates td.cell[data-col='{cpus}'][data-k='1'][data-n='1']", timeout=120_000
        )
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    cell = page.locator("#rates td.cell[data-col='1']").first
    assert "hot" in (cell.get_attribute("class") or "")
    red, green, blue = _rgb(cell.evaluate("td => getComputedStyle(td).backgroundColor"))
    assert min(red - green, red - blue) > 60, f"a cell with hangs is red, got {red, green, blue}"
    text = cell.inner_text()
    assert "1/1" in text
    assert "100.0%" in text
    assert "20.7% to 100.0%" in text, f"the Wilson interval of 1/1 is on the page as text: {text}"
    body = page.inner_text("main")
    assert "Go versions compared" in body
    _shot(page, "overview")


def _rgb(css: str) -> tuple[int, int, int]:
    parts = css[css.index("(") + 1 : css.index(")")].split(",")
    r, g, b = (int(float(x)) for x in parts[:3])
    return r, g, b


def test_every_rate_on_the_overview_shows_k_of_n_and_its_interval(farm, control_job):
    page = control_job["overview"]
    page.wait_for_selector("#rates td.cell[data-k]")
    for cell in page.locator("#rates td.cell[data-k]").all():
        k, n = cell.get_attribute("data-k"), cell.get_attribute("data-n")
        text = cell.inner_text()
        assert f"{k}/{n}" in text, text
        assert " to " in text, f"no interval in {text!r}"
    page.select_option("#f-mode", "per_million")
    page.wait_for_selector("#rates td.cell .rate:has-text('/M it.')")
    assert "1/1" in page.inner_text("#rates")


def test_the_job_page_shows_its_matrix_and_runs_and_sorts_them(farm, control_job, browser):
    job_id = control_job["job"]["id"]
    page = _open(browser, farm.link(farm.viewer))
    page.click(f"#jobs a[href='#/jobs/{job_id}']")
    page.wait_for_selector("#cells tbody tr[data-cpus='2'] td.cell[data-k='1']", timeout=120_000)
    assert page.locator("#cells tbody tr").count() == 2
    page.wait_for_selector("#runs tbody tr >> text=hung")
    assert page.locator("#runs tbody tr").count() == 2
    page.click("#runs th button:has-text('Run')")  # sort by id, descending
    page.wait_for_selector("#runs th[aria-sort='descending']")
    first_column = page.locator("#runs tbody tr td:first-child").all_inner_texts()
    ids = [int(t.strip("#")) for t in first_column]
    assert ids == sorted(ids, reverse=True)
    page.select_option("#f-status", "passed")
    page.wait_for_selector("#runs td.empty")
    page.select_option("#f-status", "hung")
    page.wait_for_selector("#runs tbody tr a")
    assert page.locator("#cancel-job").count() == 0, "a viewer sees no cancel button"
    assert page.locator("#nav-submit").is_hidden(), "a viewer sees no submit page"
    _shot(page, "job")
    page.close()


def test_the_run_page_downloads_a_dump_whose_sha256_matches(farm, control_job, browser):
    job_id = control_job["job"]["id"]
    page = _open(browser, farm.link(farm.viewer))
    page.click(f"#jobs a[href='#/jobs/{job_id}']")
    page.click("#runs tbody tr:first-child td:first-child a")
    page.wait_for_selector("#artifacts button.download")
    assert page.inner_text("#cpu-set").startswith("[")
    timeline = page.inner_text("#timeline")
    for step in ("leased", "started", "stalled", "goroutine dump", "finished"):
        assert step in timeline, timeline
    assert "stall" in page.inner_text("#events")
    dump = page.locator("#artifacts button.download").first
    for button in page.locator("#artifacts button.download").all():
        row = button.locator("xpath=ancestor::tr").inner_text()
        if "core" in row or "goroutines" in row:
            dump = button
            break
    expected = dump.get_attribute("data-sha256")
    with page.expect_download() as info:
        dump.click()
    path = info.value.path()
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == expected
    page.wait_for_selector(".status-line:has-text('sha256 matches')")
    page.wait_for_selector(".analysis", timeout=60_000)  # the worker analysed the dump
    _shot(page, "run")
    page.close()


def test_the_overview_and_the_job_page_download_the_runs_they_show(farm, control_job, browser):
    import pyarrow.parquet as pq  # the api's dependency

    job_id = control_job["job"]["id"]
    page = _open(browser, farm.link(farm.viewer))
    page.click(f"#jobs a[href='#/jobs/{job_id}']")
    page.wait_for_selector("#cells tbody tr[data-cpus='2'] td.cell[data-k='1']", timeout=120_000)
    with page.expect_download() as info:
        page.click("button[data-export='parquet']")
    assert info.value.suggested_filename == f"runs-job-{job_id}.parquet"
    runs = pq.read_table(info.value.path()).to_pylist()
    assert [(r["job_id"], r["status"], r["cpus"]) for r in runs] == [
        (job_id, "hung", 1),
        (job_id, "hung", 2),
    ]
    page.wait_for_selector(".export-links .status-line:has-text('downloaded')")
    _shot(page, "job-export")
    _nav(page, "overview")
    page.wait_for_selector("#rates td.cell[data-k]")
    page.select_option("#f-scenario", "pipe-close-race")  # the filter goes with the download
    page.wait_for_selector("#rates td.empty")
    with page.expect_download() as info:
        page.click("button[data-export='csv']")
    assert info.value.suggested_filename == "runs.csv"
    with Path(info.value.path()).open(newline="") as f:
        assert list(csv.DictReader(f)) == [], "no pipe-close-race run: the header alone"
    page.select_option("#f-scenario", "control-deadlock")
    with page.expect_download() as info:
        page.click("button[data-export='csv']")
    with Path(info.value.path()).open(newline="") as f:
        assert {r["job_id"] for r in csv.DictReader(f)} >= {str(job_id)}
    page.close()


def test_signatures_agents_and_hardware_pages_are_reached_by_clicking(farm, control_job, browser):
    page = _open(browser, farm.link(farm.viewer))
    _nav(page, "signatures")
    page.wait_for_selector("#signatures tbody tr >> text=control-deadlock", timeout=60_000)
    _shot(page, "signatures")
    _nav(page, "agents")
    page.wait_for_selector("#agents tbody tr >> text=local-")
    assert "online" in page.inner_text("#agent-summary")
    _shot(page, "agents")
    page.click("#agents tbody tr a[href^='#/hardware/']")
    page.wait_for_selector("#hardware-agents tbody tr >> text=local-")
    page.wait_for_selector("#hardware-rates td.cell[data-k]")
    _shot(page, "hardware")
    page.close()


def test_the_submit_form_previews_skipped_cells_and_submits(farm, browser):
    page = _open(browser, farm.link(farm.submitter))
    _nav(page, "submit")
    page.select_option("#s-scenario", "control-deadlock")
    page.fill("#s-cpus", "1,64")
    page.fill("#s-duration_s", "3")
    page.fill("#s-wait_for_agents_s", "")
    page.click("#dry-run")
    page.wait_for_selector("#preview-skipped")
    assert "asked for 64 CPUs" in page.inner_text("#preview-skipped")
    assert page.locator("#preview-cells tbody tr").count() == 1
    _shot(page, "submit")
    page.click("#submit-job")
    page.wait_for_selector("#cells")
    assert "#/jobs/" in page.url
    page.close()


def test_cancel_works_for_a_submitter_and_is_absent_for_a_viewer(farm, browser):
    long_job = {**CONTROL_JOB, "cpus": [1], "repeats": 5, "duration_s": 60, "control_chance": 0}
    r = farm.call("POST", "/api/v1/jobs", farm.submitter, json=long_job)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    viewer = _open(browser, f"{farm.link(farm.viewer)}")
    viewer.goto(f"{farm.url}/#/jobs/{job_id}")
    viewer.wait_for_selector("#cells")
    assert viewer.locator("#cancel-job").count() == 0
    refused = farm.call("POST", f"/api/v1/jobs/{job_id}/cancel", farm.viewer)
    assert refused.status_code == 403, refused.text
    submitter = _open(browser, farm.link(farm.submitter))
    submitter.goto(f"{farm.url}/#/jobs/{job_id}")
    submitter.click("#cancel-job")
    submitter.click("#cancel-confirm")
    submitter.wait_for_selector("h2 .badge:has-text('cancelled')")
    # The viewer's page learns it live.
    viewer.wait_for_selector("h2 .badge:has-text('cancelled')", timeout=30_000)
    wait_for(
        "the cancelled job's running run to stop",
        lambda: (
            farm.call("GET", f"/api/v1/jobs/{job_id}", farm.admin).json()["runs"]["leased"] == 0
        ),
        timeout=60,
    )
    viewer.close()
    submitter.close()


def test_a_search_study_page_reaches_its_decision_live_and_shows_its_cells(farm, browser):
    r = farm.call("POST", "/api/v1/studies", farm.submitter, json=SEARCH_STUDY)
    assert r.status_code == 201, r.text
    study_id = r.json()["job_id"]
    page = _open(browser, farm.link(farm.viewer))
    _nav(page, "jobs")
    page.click(f"#job-list a[href='#/studies/{study_id}']")
    page.wait_for_selector("#decision[data-decided='false']")
    page.evaluate("window.__notReloaded = true")
    assert page.locator("#cancel-study").count() == 0, "a viewer sees no cancel button"
    page.wait_for_selector("#decision[data-decided='true']", timeout=300_000)
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    decision = page.inner_text("#decision")
    assert decision.startswith("Done: hangs in 1 cell, does not hang in 1 cell"), decision
    for chance, verdict, words in (
        ("0.001", "reproduces", "hangs here"),
        ("0", "does-not", "does not hang here"),
    ):
        row = page.locator(f"#study-cells tbody tr[data-chance='{chance}']")
        assert row.get_attribute("data-decision") == verdict
        text = row.inner_text()
        k, n = (int(row.locator(".tally").get_attribute(a) or -1) for a in ("data-k", "data-n"))
        expected = (n if verdict == "reproduces" else 0, True)
        assert (k, n >= 2) == expected, f"{chance}: {k}/{n} in {text!r}"
        for said in (words, f"{k}/{n} hung", "(95%: "):
            assert said in text, f"{said!r} not in {text!r}"
    study = farm.call("GET", f"/api/v1/studies/{study_id}", farm.viewer).json()
    # A run still open at the decision is cancelled by the step after it: the live page
    # follows within a refresh (it may show the runs before that step a moment longer).
    page.wait_for_selector(f"#spent:has-text('{study['runs_used']} of 40 runs')", timeout=30_000)
    assert f"would need {study['runs_uniform']} runs" in page.inner_text("#uniform")
    assert "2 of 2" in (page.get_attribute("#trace", "aria-label") or "")
    page.wait_for_selector("h2 .badge:has-text('done')")
    _shot(page, "study")
    page.close()


def test_a_verify_study_page_calls_a_fix_fixed_with_its_arms_and_bound(farm, browser):
    r = farm.call("POST", "/api/v1/studies", farm.submitter, json=VERIFY_STUDY)
    assert r.status_code == 201, r.text
    study_id = r.json()["job_id"]
    page = _open(browser, farm.link(farm.viewer))
    page.goto(f"{farm.url}/#/studies/{study_id}")
    page.wait_for_selector("#decision[data-decided='true']", timeout=300_000)
    decision = page.inner_text("#decision")
    assert decision.startswith("Fixed"), decision
    tallies = {}
    for arm in ("baseline", "candidate"):
        tally = page.locator(f"#arms tbody tr[data-arm='{arm}'] .tally")
        tallies[arm] = tuple(int(tally.get_attribute(a) or -1) for a in ("data-k", "data-n"))
    (base_k, base_n), (cand_k, cand_n) = tallies["baseline"], tallies["candidate"]
    assert (base_k == base_n > 0, cand_k, cand_n > 0) == (True, 0, True), tallies
    assert "Fixed" in page.inner_text("#by-hardware tbody")
    cell = page.locator("#study-cells tbody tr")
    assert cell.count() == 1
    assert "baseline hangs here" in cell.inner_text()
    assert "fixed under 1 (1/margin)" in (page.text_content("#trace .reference") or "")
    study = farm.call("GET", f"/api/v1/studies/{study_id}", farm.viewer).json()
    assert study["ratio_upper95"] <= 1, study["ratio_upper95"]
    page.wait_for_selector("h2 .badge:has-text('done')")  # its open runs are stopped
    _shot(page, "study-verify")
    page.close()


def test_a_submitter_cancels_a_study_from_its_page(farm, browser):
    endless = {**SEARCH_STUDY, "control_chance": [0], "duration_s": 60}
    r = farm.call("POST", "/api/v1/studies", farm.submitter, json=endless)
    assert r.status_code == 201, r.text
    page = _open(browser, farm.link(farm.submitter))
    page.goto(f"{farm.url}/#/studies/{r.json()['job_id']}")
    page.click("#cancel-study")
    page.click("#cancel-confirm")
    page.wait_for_selector("h2 .badge:has-text('cancelled')")
    assert page.locator("#cancel-study").count() == 0


CORPUS = Path(__file__).resolve().parents[2] / "analyzer" / "tests" / "corpus" / "goroutines"


def test_the_triage_page_reads_a_pasted_dump_and_shows_the_farms_evidence(
    farm, control_job, browser, tmp_path
):
    """A control-deadlock dump pasted by hand (a note after a header, frames indented)
    meets the farm's own control hangs: label with its confidence, the bucket with k/n
    per hardware, first and latest runs; kept, it counts as seen in CI and is listed on
    its signature's page. A dropped file that is no dump gets the api's message."""
    wait_for(
        "the control job's hangs to be labelled",
        lambda: any(
            b["label"] == "control-deadlock"
            for b in farm.call("GET", "/api/v1/signatures", farm.viewer).json()
        ),
        timeout=120,
    )
    lines = []
    for line in (
        (CORPUS / "hangtest-control-deadlock-stall-go1.27-linux.txt").read_text().split("\n")
    ):
        if line.startswith("goroutine ") and "sync.Mutex.Lock" in line:
            line += "   <- stuck here"
        elif line.startswith("\t"):
            line = "      " + line.strip()
        lines.append(line)
    page = _open(browser, farm.link(farm.submitter))
    _nav(page, "triage")
    page.fill("#triage-text", "\n".join(lines))
    page.check("#triage-keep")
    page.fill("#triage-source", "https://ci.example/job/17")
    page.click("#triage-submit")
    page.wait_for_selector("#farm-evidence #by-hardware tbody tr")
    result = page.inner_text("#triage-result")
    assert "control-deadlock" in result
    assert "partial confidence" in result
    assert "stuck here" in result  # the note is named among what was repaired
    rows = page.locator("#by-hardware tbody tr")
    assert rows.count() >= 1
    assert "/" in rows.first.inner_text()
    assert "run #" in page.inner_text("#farm-evidence")
    assert "1 kept dump" in page.inner_text("#farm-evidence")
    page.locator("#farm-evidence").scroll_into_view_if_needed()
    _shot(page, "triage")
    # The kept dump is listed on its signature's page, where "seen in CI" links to.
    page.click("#farm-evidence >> text=1 kept dump")
    page.wait_for_selector("#seen-in-ci tbody tr >> text=https://ci.example/job/17")
    assert "control-deadlock (partial)" in page.inner_text("#seen-in-ci")
    _nav(page, "triage")
    page.wait_for_selector("#triage-file")
    notes = tmp_path / "notes.txt"
    notes.write_text("Close -> CancelIoEx -> ReadFile never returns\n")
    page.set_input_files("#triage-file", str(notes))
    page.click("#triage-submit")
    page.wait_for_selector("#page .error")
    assert "goroutine header" in page.inner_text("#page .error")
    page.js_errors[:] = [e for e in page.js_errors if "422" not in e]


def test_what_matters_ranks_the_control_chance_and_plots_its_effect(farm, browser):
    """A job of the control at chance 0 (never hangs) and 1e-3 (always hangs) on 1 and 2
    CPUs: the overview filtered to it puts control_chance first with strong evidence,
    cpus with none, and draws both effects with their intervals."""
    spec = {
        **CONTROL_JOB,
        "repeats": 3,
        "duration_s": 1,
        "stall_timeout_s": 0.5,
        "control_chance": [0, 1e-3],
    }
    r = farm.call("POST", "/api/v1/jobs", farm.submitter, json=spec)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    wait_for(
        "the job to finish",
        lambda: farm.call("GET", f"/api/v1/jobs/{job_id}", farm.viewer).json()["status"] == "done",
        timeout=300,
    )
    page = _open(browser, farm.link(farm.viewer))
    page.wait_for_selector("#jobs")
    page.goto(f"{farm.url}/#/?job_id={job_id}")
    page.wait_for_selector("#what-matters #factors tbody tr", timeout=60_000)
    first = page.locator("#what-matters #factors tbody tr").first.inner_text()
    assert first.startswith("control_chance"), first
    assert "evidence" in first, first
    assert "no evidence" not in first, first
    cpus = page.locator("#what-matters #factors tbody tr").nth(1).inner_text()
    assert cpus.startswith("cpus"), cpus
    assert "no evidence" in cpus, cpus
    effect = page.locator("#forest g.effect[data-factor='control_chance']")
    assert effect.count() == 1
    assert effect.locator("circle").count() == 1
    assert "vs 0" in (effect.locator("title").text_content() or "")
    page.locator("#what-matters").scroll_into_view_if_needed()
    _shot(page, "what-matters")
    page.close()
