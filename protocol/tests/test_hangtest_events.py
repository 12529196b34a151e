import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reprofarm_protocol.errors import ProtocolError
from reprofarm_protocol.hangtest_events import (
    DoneEvent,
    ProgressEvent,
    StallEvent,
    StartEvent,
    parse_event,
)

# Lines as hangtest 0.1.0 printed them on this machine.
START = (
    '{"event":"start","v":1,"t":"2026-11-29T02:31:39.464Z","hangtest_version":"0.1.0+src.d286",'
    '"go_version":"go1.27.3","goos":"linux","goarch":"amd64","gomaxprocs":2,"num_cpu":2,'
    '"cpu_set":[0,1],"pid":6757,"scenario":"control-deadlock","workers":10,"iterations":100000,'
    '"duration_s":5,"stall_timeout_s":2,"on_stall":"dump-and-exit","args":["-scenario"]}'
)
STALL = (
    '{"event":"stall","v":1,"t":"2026-11-29T02:31:41.466Z","elapsed_s":2.002,"workers":'
    '[{"worker":0,"iteration":0,"stalled_s":2.0,"since":"2026-11-29T02:31:39.464Z"}],'
    '"goroutine_dump":"/tmp/dd/goroutines-6757-1-stall.txt","action":"dump-and-exit",'
    '"iterations":0,"goroutine_count":33}'
)
DONE = (
    '{"event":"done","v":1,"t":"2026-11-29T02:31:37.519Z","elapsed_s":3.04,"iterations":519,'
    '"per_worker":[49,53],"errors":0,"reason":"completed","exit_code":0}'
)


def test_real_lines_parse_into_their_event_types():
    assert isinstance(parse_event(START), StartEvent)
    stall = parse_event(STALL)
    assert isinstance(stall, StallEvent)
    assert stall.workers[0].worker == 0
    done = parse_event(DONE.encode())
    assert isinstance(done, DoneEvent)
    assert done.iterations == 519


def test_unknown_fields_are_ignored_so_hangtest_can_add_them():
    line = json.loads(DONE)
    line["new_field"] = [1, 2]
    assert isinstance(parse_event(json.dumps(line)), DoneEvent)


def test_unknown_event_kind_is_skipped_not_an_error():
    assert parse_event('{"event":"telemetry","v":1,"t":"2026-01-01T00:00:00Z"}') is None


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ("not json", "not a JSON object"),
        ("[1,2]", "not a JSON object"),
        ('{"v":1}', "field 'event'"),
        ('{"event":"done","v":2,"t":"2026-01-01T00:00:00Z"}', "field 'v'"),
        (DONE.replace('"iterations":519', '"iterations":"many"'), "field 'iterations'"),
        (DONE.replace('"reason":"completed",', ""), "field 'reason'"),
    ],
)
def test_bad_lines_raise_an_error_naming_the_field(line, names):
    with pytest.raises(ProtocolError, match=names):
        parse_event(line)


def test_progress_event_keeps_per_worker_counts():
    line = (
        '{"event":"progress","v":1,"t":"2026-01-01T00:00:00Z","elapsed_s":1.0,'
        '"iterations":3,"per_worker":[1,2],"errors":0}'
    )
    event = parse_event(line)
    assert isinstance(event, ProgressEvent)
    assert event.per_worker == [1, 2]


KNOWN_KINDS = ("start", "progress", "error", "stall", "dump", "done")


def _check_parse(line: str | bytes) -> None:
    """The contract of parse_event for any line: an event of the line's own
    kind; None only for a well-formed line of a kind this reader does not know;
    otherwise a ProtocolError that says what is wrong. Nothing else escapes."""
    try:
        event = parse_event(line)
    except ProtocolError as exc:
        error = str(exc)
    else:
        error = None
    if error is not None:
        assert error.startswith(("not a JSON object", "field '", *KNOWN_KINDS)), error
        return
    raw = json.loads(line)
    assert raw["v"] == 1
    if event is None:
        assert isinstance(raw["event"], str)
        assert raw["event"] not in KNOWN_KINDS
    else:
        assert event.event == raw["event"]


@given(st.one_of(st.text(), st.binary()))
def test_any_input_is_an_event_none_or_a_protocol_error(data):
    _check_parse(data)


@st.composite
def real_events_mutated(draw: st.DrawFn) -> dict:
    """A line hangtest really printed, with a few fields dropped or replaced
    and sometimes another kind: valid events, unknown kinds and broken ones."""
    obj = dict(json.loads(draw(st.sampled_from([START, STALL, DONE]))))
    for key in draw(st.lists(st.sampled_from(sorted(obj)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del obj[key]
        else:
            obj[key] = draw(
                st.one_of(st.integers(), st.text(max_size=5), st.none(), st.lists(st.integers()))
            )
    if draw(st.integers(0, 3)) == 0:
        obj["event"] = draw(st.sampled_from([*KNOWN_KINDS, "mystery"]))
    return obj


@given(real_events_mutated())
def test_any_object_is_an_event_none_or_a_protocol_error(obj):
    _check_parse(json.dumps(obj))
