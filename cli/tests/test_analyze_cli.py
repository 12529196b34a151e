"""`reprofarm analyze`, through the installed command: the JSON contract of the
analyzer issue on real dumps (the corpus and the public minidump fixtures)."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.capabilities import public_minidumps
from tests.gzip_bomb import write_bomb
from tests.minidump_writer import KNOWN_THREAD_IDS, known_x64_crash

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "analyzer" / "tests" / "corpus" / "goroutines"
LABELS = {"cancelioex-sync-io", "close-waits-sync-io", "control-deadlock", "other-hang", "no-hang"}


def analyze(*args):
    return subprocess.run(
        [str(Path(sys.executable).parent / "reprofarm"), "analyze", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_one_goroutine_dump_gives_one_object_with_the_contract_keys():
    done = analyze(CORPUS / "hangtest-control-deadlock-stall-go1.27-linux.txt", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["kind"] == "goroutines"
    assert report["label"] == "control-deadlock"
    assert report["signature"].startswith("control-deadlock")
    assert report["evidence"]
    assert report["confidence"] == "strong"


def test_several_files_give_a_list_and_a_gzipped_dump_reads_like_the_plain_one(tmp_path):
    plain = CORPUS / "hangtest-control-deadlock-stall-go1.27-linux.txt"
    packed = tmp_path / "goroutines.txt.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    done = analyze(
        plain, packed, CORPUS / "golang-go-27861-test-panic-after-completion.txt", "--json"
    )
    assert done.returncode == 0, done.stderr
    reports = json.loads(done.stdout)
    assert [r["label"] for r in reports] == ["control-deadlock", "control-deadlock", "no-hang"]
    assert reports[0]["signature"] == reports[1]["signature"]
    assert all(r["label"] in LABELS for r in reports)


def test_a_minidump_has_arch_os_build_and_threads_placed_in_modules(tmp_path):
    dump = tmp_path / "process-1.dmp"
    dump.write_bytes(known_x64_crash())
    done = analyze(dump, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["kind"], report["arch"], report["os_build"]) == (
        "minidump",
        "amd64",
        "10.0.17134",
    )
    assert [t["id"] for t in report["threads"]] == list(KNOWN_THREAD_IDS)
    assert all(t["top"].startswith("ntdll+0x") for t in report["threads"])
    assert report["label"] == "no-hang"


@pytest.mark.needs("public-minidumps")
def test_a_public_minidump_has_arch_os_build_and_threads_placed_in_modules():
    done = analyze(public_minidumps() / "rust-minidump-invalid-parameter.dmp", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["kind"], report["arch"], report["os_build"]) == (
        "minidump",
        "amd64",
        "10.0.17134",
    )
    assert len(report["threads"]) == 6
    assert all(t["top"].startswith("ntdll") for t in report["threads"])
    assert {"id", "top"} <= set(report["threads"][0])


def test_a_file_that_is_no_dump_is_exit_2_with_a_clear_error(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("just some notes, no goroutine here\n")
    done = analyze(notes, "--json")
    assert done.returncode == 2
    assert "notes.txt" in done.stderr
    assert "not" in done.stderr.lower()


@pytest.mark.parametrize(
    "text",
    [
        "Close -> CancelIoEx -> waits -> ReadFile never returns (condensed by hand)\n",
        "goroutine 7 was stuck in chan receive, I think\n",
        "",
    ],
)
def test_text_that_is_no_dump_is_exit_2_with_nothing_on_stdout(tmp_path, text):
    """One behaviour for unreadable input: never a no-hang report, always exit 2."""
    paste = tmp_path / "paste.txt"
    paste.write_text(text)
    for args in ((paste, "--json"), (paste,)):
        done = analyze(*args)
        assert (done.returncode, done.stdout) == (2, ""), done
        assert "looked for" in done.stderr
        assert "goroutine header" in done.stderr


def test_an_annotated_hand_indented_paste_gets_its_label_and_a_lowered_confidence(tmp_path):
    paste = tmp_path / "paste.txt"
    paste.write_text(
        "fatal error: all goroutines are asleep - deadlock!\n\n"
        "goroutine 1 [chan receive]:   <- stuck here\n"
        "    main.main()\n"
        "        /src/main.go:9 +0x1d   // the receive\n"
    )
    done = analyze(paste, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["label"], report["confidence"]) == ("other-hang", "weak")
    assert any("stuck here" in p for p in report["problems"])


def test_the_readable_report_names_the_label_and_the_evidence():
    done = analyze(CORPUS / "hangtest-control-deadlock-stall-go1.27-linux.txt")
    assert done.returncode == 0, done.stderr
    assert "control-deadlock (strong confidence)" in done.stdout
    assert "evidence" in done.stdout


# Started from a small launcher, which reports its children's peak: a child started
# straight from pytest inherits pytest's own peak (Linux keeps the high-water mark of the
# memory it replaced at exec, and subprocess uses vfork), hundreds of MB late in a run.
_PEAK_OF = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], check=False).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


def test_a_gzip_bomb_is_refused_with_exit_2_and_bounded_memory(tmp_path):
    """2 MB expanding to 2 GiB behind a minidump signature: before the limits, the
    command read it whole and peaked at 2.1 GB. The peak is the largest resident set of
    the command and of its children, measured by a launcher (see _PEAK_OF)."""
    bomb = tmp_path / "process-1.dmp.gz"
    write_bomb(bomb, head=b"MDMP\x93\xa7", expanded_bytes=2 << 30)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPROFARM_")}
    env["TMPDIR"] = str(scratch)  # where `analyze` expands
    command = [str(Path(sys.executable).parent / "reprofarm"), "analyze", str(bomb)]
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_OF, *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    message = " ".join(done.stderr.split())
    assert done.returncode == 2, message
    assert message == (
        f"error: {bomb}: refused, it expands past 536,870,912 bytes, the limit for a minidump"
    ), message
    peak_kib = int(done.stdout.strip())  # the command printed nothing before it
    assert list(scratch.iterdir()) == []
    assert peak_kib < 300 * 1024, f"peak resident set {peak_kib / 1024:.0f} MB"
