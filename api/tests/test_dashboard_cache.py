"""The dashboard's kept answers (``views.cache.ByVersion``) keyed by the data
version of ``reprofarm_db.views.changes``: the same data gives the kept answer,
computed once; a re-analysis, which replaces a report in place, gives a new
version, so a page never shows the labels from before it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from reprofarm_analyzer.analysis import analyze_path
from reprofarm_analyzer.goroutine_rules import RULES_VERSION
from reprofarm_api.views.cache import ByVersion
from reprofarm_db import analyses, views
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_protocol.analysis import Label

from tests.celery_farm import leased_run_with_dumps

CORPUS = Path(__file__).resolve().parents[2] / "analyzer" / "tests" / "corpus" / "goroutines"
CONTROL_DUMP = CORPUS / "hangtest-control-deadlock-stall-go1.27-linux.txt"


def test_a_kept_answer_is_served_until_a_reanalysis_changes_a_label(postgres_url, tmp_path):
    upgrade(postgres_url)
    sessions = make_sessionmaker(make_engine(postgres_url))
    run_id, (artifact_id,) = leased_run_with_dumps(
        sessions, tmp_path, {"goroutines-1.txt": CONTROL_DUMP}
    )
    report = analyze_path(CONTROL_DUMP)
    # What older rules had said of the dump.
    old = report.model_copy(update={"label": Label.OTHER_HANG, "signature": "other-hang:old"})

    def analyse(analysis):
        with transaction(sessions) as s:
            analyses.record(
                s, artifact_id=artifact_id, analysis=analysis, error=None, rules_version=1
            )
            analyses.label_run(s, run_id=run_id, label=analysis.label, signature=analysis.signature)

    def version():
        with transaction(sessions) as s:
            parts = views.changes(s, online_since=datetime.now(UTC))
            return (parts["runs"], parts["analyses"], parts["jobs"])

    def label_now():
        computed.append(1)
        with transaction(sessions) as s:
            return views.analyses_of_run(s, run_id=run_id)[artifact_id].label

    cache, computed = ByVersion(), []
    analyse(old)
    assert cache.get_or_make(("run", version()), label_now) == "other-hang"
    assert cache.get_or_make(("run", version()), label_now) == "other-hang"
    assert len(computed) == 1, "the same data must be answered from the cache"
    analyse(report)  # the re-analysis: the same row, rewritten
    assert report.rules_version == RULES_VERSION
    assert cache.get_or_make(("run", version()), label_now) == "control-deadlock"
    assert len(computed) == 2
