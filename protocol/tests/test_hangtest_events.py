import contextlib
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


@given(st.one_of(st.text(), st.binary()))
def test_any_input_is_an_event_none_or_a_protocol_error(data):
    with contextlib.suppress(ProtocolError):
        parse_event(data)


@given(
    st.dictionaries(
        st.sampled_from(["event", "v", "t", "iterations", "per_worker", "workers", "errors"]),
        st.one_of(st.integers(), st.text(), st.none(), st.lists(st.integers())),
    )
)
def test_any_object_is_an_event_none_or_a_protocol_error(obj):
    with contextlib.suppress(ProtocolError):
        parse_event(json.dumps(obj))
