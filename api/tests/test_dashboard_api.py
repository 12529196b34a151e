"""The dashboard's own endpoints on the real app: who the token is, what changed
(ETag and 304), and the read models of each page, with their numbers."""

import pytest

from tests.api_calls import lease, make_build, register, submit
from tests.factories import hardware

HUNG = {
    "status": "hung",
    "reason": "stall",
    "iterations": 1000,
    "duration_s": 2.0,
    "cpu_set": [0],
    "requested_cpu_set": [0],
    "gomaxprocs": 1,
    "exit_code": None,
}


@pytest.fixture
def farm(api, tmp_path):
    """One agent, a job of 2 cells x 2 repeats: three runs hung, one still ready."""
    agent = register(api, "arm-1")
    r = submit(api, cpus=[1, 2], repeats=2)
    assert r.status_code == 201, r.text
    make_build(api, tmp_path / "hangtest.exe")
    for _ in range(3):
        run = lease(api, agent)
        done = api.client.post(
            f"/api/v1/runs/{run['run_id']}/result", headers=run["headers"], json={"result": HUNG}
        )
        assert done.status_code == 200, done.text
    return {"job_id": r.json()["id"], "agent": agent, "viewer": api.headers(api.token("viewer"))}


def test_whoami_says_the_role_and_whether_it_may_submit(api, farm):
    me = api.client.get("/api/v1/whoami", headers=farm["viewer"]).json()
    assert (me["role"], me["can_submit"], me["can_admin"]) == ("viewer", False, False)
    admin = api.client.get("/api/v1/whoami", headers=api.headers(api.admin)).json()
    assert (admin["role"], admin["can_submit"]) == ("admin", True)


def test_live_answers_304_until_a_run_changes(api, farm):
    first = api.client.get("/api/v1/live", headers=farm["viewer"])
    assert first.status_code == 200
    etag = first.headers["ETag"]
    same = api.client.get("/api/v1/live", headers={**farm["viewer"], "If-None-Match": etag})
    assert (same.status_code, same.content) == (304, b"")
    run = lease(api, farm["agent"])
    moved = api.client.get("/api/v1/live", headers={**farm["viewer"], "If-None-Match": etag})
    assert moved.status_code == 200, "a lease is a change"
    assert moved.json()["parts"]["runs"] != first.json()["parts"]["runs"]
    assert moved.json()["parts"]["jobs"] == first.json()["parts"]["jobs"]
    assert run["run_id"]


def test_the_overview_map_has_k_of_n_and_the_interval_per_cell(api, farm):
    r = api.client.get("/api/v1/views/overview?columns=cpus", headers=farm["viewer"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["column_values"] == [[1], [2]]
    (row,) = body["rows"]
    assert row["hardware"]["fingerprint"] == hardware(cpus=4).fingerprint
    assert row["hardware"]["os_version"] == "10.0.26100.1"
    ones, twos = row["cells"]
    assert (ones["hangs"], ones["runs"]) == (2, 2)
    assert (twos["hangs"], twos["runs"]) == (1, 1)
    assert 0 < ones["ci95_low"] < 1
    assert ones["ci95_high"] == pytest.approx(1.0)
    assert (row["total"]["hangs"], row["total"]["runs"]) == (3, 3)


def test_the_overview_is_computed_again_once_a_run_changes(api, farm):
    url = "/api/v1/views/overview?columns=cpus"
    before = api.client.get(url, headers=farm["viewer"]).json()
    assert api.client.get(url, headers=farm["viewer"]).json() == before
    run = lease(api, farm["agent"])
    done = api.client.post(
        f"/api/v1/runs/{run['run_id']}/result", headers=run["headers"], json={"result": HUNG}
    )
    assert done.status_code == 200, done.text
    after = api.client.get(url, headers=farm["viewer"]).json()
    assert (after["rows"][0]["total"]["hangs"], after["rows"][0]["total"]["runs"]) == (4, 4)


def test_the_overview_filters_by_scenario_and_refuses_an_unknown_axis(api, farm):
    none = api.client.get(
        "/api/v1/views/overview?scenario=pipe-close-race", headers=farm["viewer"]
    ).json()
    assert none["rows"] == []
    assert none["total_rows"] == 0
    bad = api.client.get("/api/v1/views/overview?columns=colour", headers=farm["viewer"])
    assert bad.status_code == 422
    assert bad.json()["detail"]["field"] == "columns"


def test_the_go_comparison_compares_within_a_scenario(api, farm):
    r = api.client.get("/api/v1/views/go-comparison", headers=farm["viewer"]).json()
    assert r["compare"] == "go_version"
    assert [(g["keys"], g["hangs"], g["runs"]) for g in r["groups"]] == [
        ({"scenario": "control-deadlock", "go_version": "1.27.3"}, 3, 3)
    ]
    assert r["comparisons"] == []  # one Go version: nothing to compare


def test_a_job_view_has_its_cells_by_state_and_pages_of_runs(api, farm):
    job_id = farm["job_id"]
    view = api.client.get(f"/api/v1/views/jobs/{job_id}", headers=farm["viewer"]).json()
    assert view["job"]["runs"]["hung"] == 3
    cells = {c["cpus"]: c for c in view["cells"]}
    assert cells[1]["by_status"] == {"hung": 2}
    assert cells[2]["by_status"] == {"hung": 1, "ready": 1}
    assert (cells[2]["rate"]["hangs"], cells[2]["rate"]["runs"]) == (1, 1)
    assert cells[1]["target"] == "any agent"
    page = api.client.get(
        f"/api/v1/views/jobs/{job_id}/runs?sort=status&desc=true&limit=1", headers=farm["viewer"]
    ).json()
    assert page["total"] == 4
    assert [r["status"] for r in page["runs"]] == ["ready"]
    hung = api.client.get(
        f"/api/v1/views/jobs/{job_id}/runs?status=hung", headers=farm["viewer"]
    ).json()
    assert hung["total"] == 3
    assert {r["agent"] for r in hung["runs"]} == {"arm-1"}
    bad = api.client.get(f"/api/v1/views/jobs/{job_id}/runs?sort=colour", headers=farm["viewer"])
    assert (bad.status_code, bad.json()["detail"]["field"]) == (422, "sort")


def test_the_jobs_lists_say_which_jobs_are_studies(api, farm):
    study = api.client.post(
        "/api/v1/studies",
        headers=api.headers(api.admin),
        json={"kind": "search", "scenario": "control-deadlock", "budget": {"runs": 20}},
    )
    assert study.status_code == 201, study.text
    study_id = study.json()["job_id"]
    listed = api.client.get("/api/v1/jobs", headers=farm["viewer"]).json()
    page = api.client.get("/api/v1/views/jobs", headers=farm["viewer"]).json()["jobs"]
    for jobs in (listed, page):
        kinds = {j["id"]: j["kind"] for j in jobs}
        assert kinds == {farm["job_id"]: "matrix", study_id: "search"}, kinds


def test_a_run_view_names_its_agent_hardware_and_build(api, farm):
    page = api.client.get(
        f"/api/v1/views/jobs/{farm['job_id']}/runs?status=hung", headers=farm["viewer"]
    ).json()
    run_id = page["runs"][0]["id"]
    view = api.client.get(f"/api/v1/views/runs/{run_id}", headers=farm["viewer"]).json()
    assert view["run"]["result"]["cpu_set"] == [0]
    assert view["agent"]["name"] == "arm-1"
    assert view["hardware"]["cpu_model"] == "Snapdragon X Elite"
    assert view["build"]["go_version"] == "1.27.3"
    assert view["job_status"] == "running"
    assert view["analyses"] == []


def test_a_hardware_view_lists_its_agents_and_rates(api, farm):
    fingerprint = hardware(cpus=4).fingerprint
    view = api.client.get(f"/api/v1/views/hardware/{fingerprint}", headers=farm["viewer"]).json()
    assert [a["name"] for a in view["agents"]] == ["arm-1"]
    assert sorted((c["keys"]["cpus"], c["hangs"], c["runs"]) for c in view["rates"]) == [
        (1, 2, 2),
        (2, 1, 1),
    ]
    unknown = api.client.get(f"/api/v1/views/hardware/{'0' * 64}", headers=farm["viewer"])
    assert unknown.status_code == 404
    labels = api.client.get(
        f"/api/v1/views/hardware?fingerprints={fingerprint},{'0' * 64}", headers=farm["viewer"]
    ).json()
    assert [c["fingerprint"] for c in labels] == [fingerprint]
