"""Bounded analysis: gzip bombs are refused by size as they expand, with the scratch
disk they take bounded; a reader that needs too much memory or time is stopped in
its child process, and the caller gets the reason."""

from __future__ import annotations

import gzip
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from reprofarm_analyzer.bounded import analyze_bounded
from reprofarm_analyzer.compressed import expanded
from reprofarm_analyzer.errors import DumpLimitError, NotADumpError
from reprofarm_protocol.analysis import AnalysisLimits, Label

from tests.gzip_bomb import MIB, write_bomb

CORPUS = Path(__file__).parent / "corpus" / "goroutines"
CONTROL = CORPUS / "hangtest-control-deadlock-stall-go1.27-linux.txt"
GIB = 1 << 30


@contextmanager
def disk_use_of(folder: Path) -> Iterator[list[int]]:
    """Samples the bytes the files under ``folder`` take on disk (allocated blocks,
    so holes count for nothing) every 5 ms; yields a list holding the largest seen."""
    most = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            used = 0
            for path in folder.rglob("*"):
                with suppress(FileNotFoundError):  # removed meanwhile
                    used += path.stat().st_blocks * 512
            most[0] = max(most[0], used)
            stop.wait(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield most
    finally:
        stop.set()
        sampler.join()


def test_a_minidump_bomb_is_refused_at_the_minidump_limit_without_taking_disk(tmp_path):
    """2 MB that expand to 2 GiB behind a minidump's signature: the file that made
    ``reprofarm analyze`` peak at 2.2 GB. Its zeros become holes, so the scratch
    folder holds almost nothing, and the default limits refuse it at 512 MiB."""
    bomb = tmp_path / "process-1.dmp.gz"
    assert write_bomb(bomb, head=b"MDMP\x93\xa7", expanded_bytes=2 * GIB) < 3 * MIB
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with disk_use_of(scratch) as most, pytest.raises(DumpLimitError) as refused:
        analyze_bounded(bomb, scratch=scratch)
    assert refused.value.reason == (
        "it expands past 536,870,912 bytes, the limit for a minidump"
    ), refused.value.reason
    assert most[0] <= 2 * MIB, f"the scratch folder took {most[0]:,} bytes of disk"
    assert list(scratch.iterdir()) == []


def test_a_text_bomb_is_refused_at_the_text_limit_with_scratch_bounded_by_it(tmp_path):
    """A goroutine header and then gigabytes of text: written as it expands (text has
    no holes) until the text limit, then refused and removed."""
    bomb = tmp_path / "goroutines-1.txt.gz"
    write_bomb(bomb, head=b"goroutine 1 [running]:\n", expanded_bytes=2 * GIB, filler=b"x")
    limits = AnalysisLimits(max_text_bytes=16 * MIB)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with disk_use_of(scratch) as most, pytest.raises(DumpLimitError) as refused:
        analyze_bounded(bomb, scratch=scratch, limits=limits)
    assert "expands past 16,777,216 bytes, the limit for a goroutine dump" in str(refused.value)
    assert 0 < most[0] <= 17 * MIB, f"the scratch folder took {most[0]:,} bytes of disk"
    assert list(scratch.iterdir()) == []


def test_non_zero_data_past_the_scratch_limit_is_refused(tmp_path):
    bomb = tmp_path / "process-1.4242.gz"
    write_bomb(bomb, head=b"\x7fELF", expanded_bytes=64 * MIB, filler=b"\x01")
    limits = AnalysisLimits(max_scratch_bytes=8 * MIB)
    refused = pytest.raises(DumpLimitError, match="passes 8,388,608 bytes of scratch disk")
    with refused, expanded(bomb, tmp_path, limits):
        pass


def test_a_sparse_expansion_reads_back_exactly(tmp_path):
    """Holes read as the zeros they replace: a core of mostly zeros expands to the
    same bytes, including a hole at its very end."""
    plain = b"\x7fELF" + bytes(3 * MIB) + b"tail" + bytes(MIB + 5)
    packed = tmp_path / "process-1.4242.gz"
    packed.write_bytes(gzip.compress(plain))
    with expanded(packed, tmp_path) as out:
        assert out.read_bytes() == plain
        assert out.stat().st_blocks * 512 < 3 * MIB


def test_a_plain_minidump_past_its_limit_is_refused_before_it_is_read(tmp_path):
    dump = tmp_path / "big.dmp"
    with dump.open("wb") as f:
        f.write(b"MDMP")
        f.truncate(GIB)  # sparse: no disk, no memory
    with pytest.raises(DumpLimitError, match="1,073,741,824 bytes, past the limit of"):
        analyze_bounded(dump)


def test_a_reader_that_needs_more_memory_than_allowed_is_stopped(tmp_path):
    """A minidump under its size limit but over the memory limit: read whole, it
    cannot be held, and the child says so instead of swapping the machine."""
    dump = tmp_path / "big.dmp"
    with dump.open("wb") as f:
        f.write(b"MDMP")
        f.truncate(512 * MIB)
    limits = AnalysisLimits(max_minidump_bytes=GIB, memory_bytes=256 * MIB)
    with pytest.raises(DumpLimitError, match="needs more than 268,435,456 bytes of memory"):
        analyze_bounded(dump, limits=limits)


def test_an_analysis_past_its_time_is_killed_and_refused(tmp_path):
    """A FIFO nobody writes: the child blocks opening it, as a reader stuck on a dump
    would; it is killed at the timeout and the reason says so."""
    fifo = tmp_path / "goroutines-1.txt"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(DumpLimitError, match=r"took longer than 1\.5 s"):
        analyze_bounded(fifo, limits=AnalysisLimits(timeout_s=1.5))
    assert time.monotonic() - started < 10


def test_a_dump_within_the_limits_is_analysed_as_before(tmp_path):
    packed = tmp_path / "goroutines-1.txt.gz"
    packed.write_bytes(gzip.compress(CONTROL.read_bytes()))
    assert analyze_bounded(packed, scratch=tmp_path / "s").label is Label.CONTROL_DEADLOCK


def test_a_gzipped_paste_that_is_no_dump_is_refused_as_text_is(tmp_path):
    """What triage does with a gzip'd body: expanded within the limits, then read as text."""
    packed = tmp_path / "paste.txt.gz"
    packed.write_bytes(gzip.compress(b"Close() -> CancelIoEx -> waits for the reader\n"))
    with pytest.raises(NotADumpError, match="goroutine header"):
        analyze_bounded(packed, scratch=tmp_path / "s")


def test_a_cut_gzip_is_an_error_that_names_it(tmp_path):
    """A gzip cut short (a partial download): OSError with the reason, which triage turns
    into a 422 and ``reprofarm analyze`` into exit 2."""
    packed = tmp_path / "goroutines-1.txt.gz"
    packed.write_bytes(gzip.compress(CONTROL.read_bytes())[:200])
    with pytest.raises(OSError, match=r"end-of-stream|Compressed file ended"):
        analyze_bounded(packed, scratch=tmp_path / "s")
