import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reprofarm_agent.durations import format_duration, parse_duration
from reprofarm_agent.summary import summarize
from reprofarm_protocol.runs import RunResult, RunStatus


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20s", 20), ("1m30s", 90), ("500ms", 0.5), ("1.5h", 5400), ("0", 0), ("2us", 2e-6)],
)
def test_go_durations_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "20", "s", "1x", "-1s", "1s junk"])
def test_bad_durations_name_the_field(text):
    with pytest.raises(ValueError, match="stall-timeout"):
        parse_duration(text, field="stall-timeout")


@given(st.text(max_size=20))
def test_any_text_parses_or_raises_value_error(text):
    with contextlib.suppress(ValueError):
        assert parse_duration(text) >= 0


@given(st.integers(1, 10**7))
def test_formatted_milliseconds_parse_back(ms):
    assert parse_duration(format_duration(ms / 1000)) == pytest.approx(ms / 1000)


def result(status: RunStatus, iterations: int = 10) -> RunResult:
    return RunResult(
        status=status,
        reason="",
        iterations=iterations,
        duration_s=1,
        cpu_set=[0],
        requested_cpu_set=[0],
        gomaxprocs=1,
        exit_code=0,
    )


def test_error_runs_never_enter_the_denominator():
    s = summarize([result(RunStatus.HUNG), result(RunStatus.PASSED), result(RunStatus.ERROR)])
    assert (s.runs, s.hangs, s.errors) == (3, 1, 1)
    assert s.hit_rate == 0.5
    assert s.ci95_low == pytest.approx(0.0945, abs=1e-4)
    assert s.ci95_high == pytest.approx(0.9055, abs=1e-4)


def test_only_errors_give_no_rate():
    s = summarize([result(RunStatus.ERROR)])
    assert s.hit_rate is None
    assert s.ci95_high is None
