"""What the analyzer says about one dump: the wire shape shared by the analyzer, the db,
the api, the CLI and the dashboard (one definition, so a label cannot drift)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Label(StrEnum):
    """Which hang a dump shows. ``cancelioex-sync-io`` is *the* bug (the-hang.md)."""

    CANCELIOEX_SYNC_IO = "cancelioex-sync-io"
    CLOSE_WAITS_SYNC_IO = "close-waits-sync-io"
    CONTROL_DEADLOCK = "control-deadlock"
    OTHER_HANG = "other-hang"
    NO_HANG = "no-hang"


PENDING_LABEL = "pending"
"""What statistics group a hung run under while its dumps are not analysed yet."""


class DumpKind(StrEnum):
    GOROUTINES = "goroutines"
    MINIDUMP = "minidump"
    CORE = "core"


class Evidence(BaseModel):
    """One fact a rule relied on: which goroutines or threads, which frames."""

    model_config = ConfigDict(frozen=True)

    rule: str = Field(description="the rule (or reader step) that produced this fact")
    detail: str = Field(description="one sentence a person can read")
    goroutines: list[int] = Field(default_factory=list)
    threads: list[int] = Field(default_factory=list)
    frames: list[str] = Field(default_factory=list)


class ThreadTop(BaseModel):
    """A native thread of a process dump and where it sits."""

    model_config = ConfigDict(frozen=True)

    id: int
    top: str = Field(description="module!export+0xOFF, or module+0xOFF without an export table")
    role: str | None = Field(
        None, description="cancel-io, sync-read, sync-write, wait, or None when unremarkable"
    )


class StuckGroup(BaseModel):
    """Goroutines with the same state and frames, collapsed."""

    model_config = ConfigDict(frozen=True)

    count: int
    state: str
    goroutines: list[int]
    frames: list[str] = Field(description="function names, innermost first")


class Analysis(BaseModel):
    """The triage of one file. ``problems`` lists what could not be read (never fatal)."""

    kind: DumpKind
    label: Label
    signature: str = Field(description="stable across goroutine ids, addresses and wait times")
    rules_version: int
    evidence: list[Evidence] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    stuck: list[StuckGroup] = Field(default_factory=list)
    goroutines: int | None = None
    arch: str | None = None
    os_build: str | None = None
    processors: int | None = None
    threads: list[ThreadTop] = Field(default_factory=list)
    modules: list[str] = Field(default_factory=list)
