"""Minidumps of the farm's own hung hangtest.exe, taken under Wine with dbghelp's
MiniDumpWriteDump (agent-windows/wine/make-minidumps.sh; .ci/run makes them once
and points REPROFARM_WINE_MINIDUMPS at them). Real Windows-format dumps of Go's
threads: the full-memory one holds ntdll's image, so frames get export names
without any sidecar."""

import pytest
from reprofarm_analyzer.analysis import analyze_path
from reprofarm_protocol.analysis import DumpKind, Label

from tests.capabilities import wine_minidumps

FOLDER = wine_minidumps()
# One placeholder where none are made, so the test is reported as skipped for lack of them.
FULL = sorted(FOLDER.glob("go*/hangtest-go*-full.dmp")) or [FOLDER / "none" / "none.dmp"]

pytestmark = pytest.mark.needs("wine-minidumps")


@pytest.mark.parametrize("dump", FULL, ids=lambda p: p.parent.name)
def test_a_full_memory_dump_of_hung_hangtest_names_its_threads_from_ntdlls_image(dump):
    report = analyze_path(dump)
    assert report.kind is DumpKind.MINIDUMP
    assert report.arch == "amd64"
    assert len(report.threads) >= 4
    tops = [t.top for t in report.threads]
    assert all(top.startswith("ntdll!Nt") for top in tops), tops
    assert all(t.role == "wait" for t in report.threads)
    # The native view alone cannot tell the control deadlock from another hang.
    assert report.label is Label.OTHER_HANG


def test_the_goroutine_dump_beside_it_says_control_deadlock():
    (goroutines,) = sorted(FULL[-1].parent.glob("goroutines-*.txt"))[:1]
    assert analyze_path(goroutines).label is Label.CONTROL_DEADLOCK
