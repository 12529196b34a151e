"""`reprofarm db reanalyze` through the installed command, on an embedded (SQLite) farm:
kept triaged dumps of older rules get new verdicts, and the command says how many."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reprofarm_analyzer.analysis import analyze_path
from reprofarm_analyzer.goroutine_rules import RULES_VERSION
from reprofarm_db import triage
from reprofarm_db.engine import make_engine, make_sessionmaker, transaction
from reprofarm_db.migrate import upgrade
from reprofarm_db.models import TriagedDump

from api.tests.test_triage import CONTROL


def test_db_reanalyze_redoes_kept_triaged_dumps_of_older_rules(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reprofarm.sqlite'}"
    upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    with transaction(sessions) as s:
        row, _ = triage.keep(
            s,
            analysis=analyze_path(CONTROL),
            data=CONTROL.read_bytes(),
            sent_by="qa",
            source=None,
        )
        row.rules_version, row.label = 0, "other-hang"  # as an older version said
        row_id = row.id
    done = subprocess.run(
        [str(Path(sys.executable).parent / "reprofarm"), "db", "reanalyze"],
        capture_output=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "REPROFARM_DATA_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"re-analysed 0 dumps of runs and 1 kept triaged dumps\n"
    with transaction(sessions) as s:
        row = s.get(TriagedDump, row_id)
        assert (row.label, row.rules_version) == ("control-deadlock", RULES_VERSION)
