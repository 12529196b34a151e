"""hangtest's JSON-lines events (protocol version 1, docs/hangtest.md).

Every line hangtest writes on stdout is one object with ``event``, ``v`` and
``t``. Readers dispatch on ``event`` and must ignore fields they do not know,
so hangtest can add fields without a version bump.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from reprofarm_protocol.errors import ProtocolError

PROTOCOL_VERSION = 1


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1]
    t: datetime


class StartEvent(_Event):
    event: Literal["start"]
    hangtest_version: str
    go_version: str
    goos: str
    goarch: str
    gomaxprocs: int
    num_cpu: int
    cpu_set: list[int] | None
    cpu_set_error: str | None = None
    pid: int
    scenario: str
    workers: int
    iterations: int
    duration_s: float
    stall_timeout_s: float
    on_stall: str


class ProgressEvent(_Event):
    event: Literal["progress"]
    elapsed_s: float
    iterations: int
    per_worker: list[int]
    errors: int


class ErrorEvent(_Event):
    event: Literal["error"]
    worker: int
    iteration: int
    message: str


class StalledWorker(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    worker: int
    iteration: int
    stalled_s: float
    since: datetime


class StallEvent(_Event):
    event: Literal["stall"]
    elapsed_s: float
    workers: list[StalledWorker]
    goroutine_dump: str
    dump_error: str | None = None
    action: str
    iterations: int
    goroutine_count: int


class DumpEvent(_Event):
    event: Literal["dump"]
    reason: str
    goroutine_dump: str
    dump_error: str | None = None


class DoneEvent(_Event):
    event: Literal["done"]
    elapsed_s: float
    iterations: int
    per_worker: list[int]
    errors: int
    reason: str
    exit_code: int


HangtestEvent = Annotated[
    StartEvent | ProgressEvent | ErrorEvent | StallEvent | DumpEvent | DoneEvent,
    Field(discriminator="event"),
]

_EVENT_ADAPTER: TypeAdapter[HangtestEvent] = TypeAdapter(HangtestEvent)
_KNOWN_EVENTS = frozenset({"start", "progress", "error", "stall", "dump", "done"})


def parse_event(line: str | bytes) -> HangtestEvent | None:
    """Parse one stdout line of hangtest.

    Returns None for an event kind this reader does not know (a newer
    hangtest may add kinds); raises ProtocolError for anything that is not a
    valid event, naming the field and the reason.
    """
    try:
        raw = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not a JSON object: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(f"not a JSON object: got {type(raw).__name__}")
    kind = raw.get("event")
    if not isinstance(kind, str):
        raise ProtocolError("field 'event': missing or not a string")
    if raw.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"field 'v': protocol version {raw.get('v')!r} is not supported")
    if kind not in _KNOWN_EVENTS:
        return None
    try:
        return _EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "event"
        raise ProtocolError(f"{kind} event, field '{where}': {first['msg']}") from None
