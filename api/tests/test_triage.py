"""``POST /api/v1/triage`` on the real app and Postgres: a pasted dump's report and the
farm's evidence for its signature (bucket, hit rate per hardware, Go versions), kept only
when asked; unreadable text and oversized bodies refused with the field and the reason."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
from reprofarm_analyzer.analysis import analyze_path
from reprofarm_db import analyses
from reprofarm_db.engine import transaction
from reprofarm_db.models import TriagedDump
from sqlalchemy import select

from tests.api_calls import lease, make_build, register, submit

CORPUS = Path(__file__).resolve().parents[2] / "analyzer" / "tests" / "corpus" / "goroutines"
CONTROL = CORPUS / "hangtest-control-deadlock-stall-go1.27-linux.txt"
RESULT = {
    "reason": "stall",
    "iterations": 100,
    "duration_s": 2.0,
    "cpu_set": [0],
    "requested_cpu_set": [0],
    "gomaxprocs": 1,
    "exit_code": None,
}


def farm_with_one_labelled_hang(api, tmp_path) -> int:
    """Three runs on one agent: one hung (labelled from the real control dump), two passed."""
    agent = register(api)
    assert submit(api, repeats=3).status_code == 201
    make_build(api, tmp_path / "hangtest.exe")
    hung_id = 0
    for n in range(3):
        run = lease(api, agent)
        status = "hung" if n == 0 else "passed"
        r = api.client.post(
            f"/api/v1/runs/{run['run_id']}/result",
            headers=run["headers"],
            json={"result": {**RESULT, "status": status}},
        )
        assert r.status_code == 200, r.text
        if status == "hung":
            hung_id = run["run_id"]
    report = analyze_path(CONTROL)
    with transaction(api.client.app.state.sessions) as s:
        analyses.label_run(
            s,
            run_id=hung_id,
            label=report.label,
            signature=report.signature,
            confidence=report.confidence,
        )
    return hung_id


def annotated_paste() -> bytes:
    """The control dump as a person pastes it: notes after a header, frames indented."""
    lines = []
    for line in CONTROL.read_text().split("\n"):
        if line.startswith("goroutine ") and "sync.Mutex.Lock" in line:
            line += "   <- stuck here"
        elif line.startswith("\t"):
            line = "        " + line.strip()
        lines.append(line)
    return "\n".join(lines).encode()


def test_a_pasted_dump_gets_its_report_and_the_farms_bucket(api, tmp_path) -> None:
    hung_id = farm_with_one_labelled_hang(api, tmp_path)
    viewer = api.token("viewer")
    r = api.client.post(
        "/api/v1/triage",
        headers={**api.headers(viewer), "Content-Type": "text/plain"},
        content=annotated_paste(),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["label"], body["confidence"]) == ("control-deadlock", "partial")
    assert any("stuck here" in p for p in body["problems"])
    bucket = body["bucket"]
    assert (bucket["match"], bucket["reason"]) == ("exact", "the same signature")
    assert bucket["signature"] == body["signature"]
    assert bucket["hung_runs"] == 1
    assert bucket["first_run"]["id"] == bucket["latest_run"]["id"] == hung_id
    (hw,) = bucket["by_hardware"]
    assert (hw["runs"], hw["hangs"]) == (3, 1)
    assert 0 < hw["ci95_low"] < 1 / 3 < hw["ci95_high"] < 1
    assert bucket["go_versions_seen"]
    assert bucket["go_versions_never"] == []
    assert body["kept_id"] is None
    assert body["seen_in_ci"]["dumps"] == 0
    with transaction(api.client.app.state.sessions) as s:
        assert s.scalars(select(TriagedDump)).all() == [], "not kept unless asked"


def cut_paste() -> bytes:
    """One of the deadlocked goroutines as a CI log kept it: the top of the dump, with
    that goroutine's header and wait state, cut off; no rule can fire on it alone."""
    lines = CONTROL.read_text().split("\n")
    start = next(n for n, line in enumerate(lines) if "main.lockLeftThenRight(" in line) - 8
    assert lines[start - 1].startswith("goroutine "), "the header is the line before"
    return "\n".join(lines[start : start + 14]).encode()


def test_a_cut_paste_is_offered_the_similar_bucket_across_labels(api, tmp_path) -> None:
    farm_with_one_labelled_hang(api, tmp_path)
    r = api.client.post(
        "/api/v1/triage", headers=api.headers(api.token("viewer")), content=cut_paste()
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] == "other-hang", "the cut paste alone fires no rule"
    assert body["signature"].startswith("other-hang:unknown@")
    bucket = body["bucket"]
    assert bucket is not None, "the farm's control-deadlock bucket should be offered"
    assert (bucket["match"], bucket["similarity"], bucket["label"]) == (
        "similar",
        0.5,
        "control-deadlock",
    )
    assert "main.lockLeftThenRight" in bucket["reason"]
    assert "rule: control-deadlock" in bucket["reason"]
    assert bucket["hung_runs"] == 1


def test_a_dump_the_farm_never_saw_has_no_bucket(api) -> None:
    text = (
        b"panic: test timed out after 10m0s\n\ngoroutine 5 [chan receive]:\n"
        b"main.waitForever()\n\t/src/main.go:9 +0x1d\nmain.main()\n\t/src/main.go:4 +0x11\n"
    )
    r = api.client.post("/api/v1/triage", headers=api.headers(api.token("viewer")), content=text)
    assert r.status_code == 200, r.text
    assert (r.json()["label"], r.json()["bucket"]) == ("other-hang", None)


def test_keep_stores_the_dump_with_who_sent_it_and_counts_it_as_seen_in_ci(api) -> None:
    submitter = api.token("submitter")
    r = api.client.post(
        "/api/v1/triage?keep=true&source=https://ci.example/job/7",
        headers=api.headers(submitter),
        content=CONTROL.read_bytes(),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["already_kept"], body["seen_in_ci"]["dumps"]) == (False, 1)
    assert body["seen_in_ci"]["key"] == analyses.signature_key(body["signature"])
    with transaction(api.client.app.state.sessions) as s:
        (kept,) = s.scalars(select(TriagedDump)).all()
        assert (kept.id, kept.sent_by, kept.source, kept.label) == (
            body["kept_id"],
            "submitter",
            "https://ci.example/job/7",
            "control-deadlock",
        )
        assert kept.sha256 == hashlib.sha256(CONTROL.read_bytes()).hexdigest()
        assert (kept.kind, kept.rules_version) == ("goroutines", body["rules_version"])


def test_the_same_dump_kept_again_is_not_stored_twice(api) -> None:
    """The reply names the first copy; "seen in CI" counts the dump once."""
    answers = [
        api.client.post(
            "/api/v1/triage?keep=true", headers=api.headers(token), content=CONTROL.read_bytes()
        ).json()
        for token in (api.token("submitter"), api.admin)
    ]
    first, again = answers
    assert (first["already_kept"], again["already_kept"]) == (False, True)
    assert again["kept_id"] == first["kept_id"]
    assert again["seen_in_ci"]["dumps"] == 1
    with transaction(api.client.app.state.sessions) as s:
        assert [k.sent_by for k in s.scalars(select(TriagedDump))] == ["submitter"]


def _keep(api, text: bytes, source: str) -> dict:
    r = api.client.post(
        "/api/v1/triage",
        params={"keep": "true", "source": source},
        headers=api.headers(api.token("submitter")),
        content=text,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_seen_in_ci_lists_a_signatures_kept_dumps_newest_first_by_page(api) -> None:
    first = _keep(api, CONTROL.read_bytes(), "https://ci.example/1")
    second = _keep(api, annotated_paste(), "https://ci.example/2")  # same signature
    _keep(api, b"goroutine 5 [chan receive]:\nmain.f()\n\t/src/main.go:9 +0x1d\n", "other")
    key = first["seen_in_ci"]["key"]
    viewer = api.headers(api.token("viewer"))
    r = api.client.get(f"/api/v1/signatures/{key}/seen-in-ci", headers=viewer)
    assert r.status_code == 200, r.text
    assert [(d["id"], d["source"], d["sent_by"]) for d in r.json()] == [
        (second["kept_id"], "https://ci.example/2", "submitter"),
        (first["kept_id"], "https://ci.example/1", "submitter"),
    ]
    assert r.json()[1]["size"] == len(CONTROL.read_bytes())
    assert {d["label"] for d in r.json()} == {"control-deadlock"}
    assert r.json()[0]["confidence"] == "partial"
    page = api.client.get(
        f"/api/v1/signatures/{key}/seen-in-ci?limit=1&offset=1", headers=viewer
    ).json()
    assert [d["id"] for d in page] == [first["kept_id"]]
    unknown = api.client.get(f"/api/v1/signatures/{'0' * 16}/seen-in-ci", headers=viewer)
    assert (unknown.status_code, unknown.json()) == (200, [])


def test_an_admin_deletes_a_kept_dump_and_it_no_longer_counts(api) -> None:
    kept = _keep(api, CONTROL.read_bytes(), "https://ci.example/1")
    url = f"/api/v1/triage/kept/{kept['kept_id']}"
    submitter = api.client.delete(url, headers=api.headers(api.token("submitter")))
    assert submitter.status_code == 403, submitter.text
    assert api.client.delete(url, headers=api.headers(api.admin)).status_code == 204
    again = api.client.delete(url, headers=api.headers(api.admin))
    assert again.status_code == 404, again.text
    assert str(kept["kept_id"]) in again.json()["detail"]["message"]
    key = kept["seen_in_ci"]["key"]
    listed = api.client.get(
        f"/api/v1/signatures/{key}/seen-in-ci", headers=api.headers(api.admin)
    ).json()
    assert listed == []
    assert _keep(api, CONTROL.read_bytes(), "again")["already_kept"] is False


def test_keep_needs_a_submitter_token(api) -> None:
    r = api.client.post(
        "/api/v1/triage?keep=true",
        headers=api.headers(api.token("viewer")),
        content=CONTROL.read_bytes(),
    )
    assert r.status_code == 403, r.text
    assert "submitter" in r.json()["detail"]["message"]


@pytest.mark.parametrize(
    "text",
    [
        b"Close -> CancelIoEx -> ReadFile never returns\n",
        b"",
        b"\x00\x01binary\x00",
        b"goroutine 9 [syscall]: Close -> CancelIoEx -> stuck\n",  # a header, no frame
        # A crafted line that cost the old header patterns quadratic time (16 MiB: hours):
        # read in linear time now, and in the bounded child anyway; refused as prose.
        b"goroutine 1 [x] {" * 60_000,
    ],
)
def test_text_that_is_no_dump_is_422_naming_the_body(api, text: bytes) -> None:
    r = api.client.post("/api/v1/triage", headers=api.headers(api.token("viewer")), content=text)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail["field"] == "body"
    assert "goroutine header" in detail["message"]


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
def test_a_core_is_refused_before_it_is_read_even_gzipped(api, packed: bool) -> None:
    core = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x04\x00" + b"\0" * 4000  # ET_CORE
    body = gzip.compress(core) if packed else core
    r = api.client.post("/api/v1/triage", headers=api.headers(api.token("viewer")), content=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["message"].startswith("body: a core dump")


@pytest.mark.parametrize("api", [{"max_triage_bytes": 4096}], indirect=True)
def test_a_dump_over_the_limit_is_413(api) -> None:
    r = api.client.post(
        "/api/v1/triage", headers=api.headers(api.token("viewer")), content=CONTROL.read_bytes()
    )
    assert r.status_code == 413, r.text
    assert "4096" in r.json()["detail"]["message"]


def test_the_triage_limit_is_its_own_not_the_body_limit(api) -> None:
    """A 3 MB dump passes (the ordinary body limit is 1 MiB)."""
    block = CONTROL.read_text()
    text = (block + "\n") * (3_000_000 // len(block))
    r = api.client.post(
        "/api/v1/triage", headers=api.headers(api.token("viewer")), content=text.encode()
    )
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "control-deadlock"


def test_a_kept_dump_shows_as_seen_in_ci_beside_the_bucket(api, tmp_path) -> None:
    farm_with_one_labelled_hang(api, tmp_path)
    r = api.client.post(
        "/api/v1/triage?keep=true",
        headers=api.headers(api.token("submitter")),
        content=annotated_paste(),
    )
    assert r.status_code == 200, r.text
    (bucket,) = api.client.get("/api/v1/signatures", headers=api.headers(api.admin)).json()
    assert (bucket["runs"], bucket["seen_in_ci"]) == (1, 1)
    assert bucket["key"] == r.json()["bucket"]["key"]
