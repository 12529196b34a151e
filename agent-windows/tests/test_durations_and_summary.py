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


@given(st.one_of(st.text(max_size=20), st.from_regex(r"\A[0-9.]{1,4}(ns|us|ms|s|m|h|x)?\Z")))
def test_any_text_parses_or_raises_value_error_naming_the_field(text):
    try:
        seconds = parse_duration(text, field="stall-timeout")
    except ValueError as exc:
        error = str(exc)
    else:
        error = None
    if error is not None:
        assert error.startswith("stall-timeout: "), error
        return
    # Accepted: "0" alone, or number-unit pairs, which all end in a unit.
    assert text.strip() == "0" or text.strip()[-1] in "smh", (text, seconds)


UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(UNIT_SECONDS))),
        min_size=1,
        max_size=4,
    )
)
def test_composed_durations_parse_to_the_sum_of_their_parts(parts):
    text = "".join(f"{n}{unit}" for n, unit in parts)
    expected = sum(n * UNIT_SECONDS[unit] for n, unit in parts)
    assert parse_duration(text) == pytest.approx(expected, rel=1e-9, abs=1e-12)


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
