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


class Confidence(StrEnum):
    """How far a label can be trusted (docs/analyzer.md, "Confidence").

    ``strong``: the goroutines (or threads) the label rests on are all there, in traceback
    form, in a dump whose reason is known; ``partial``: the text was repaired or cut, or
    does not say why it was written; ``weak``: the label rests on a goroutine without its
    header, a cut goroutine, or a single frame."""

    STRONG = "strong"
    PARTIAL = "partial"
    WEAK = "weak"


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
    confidence: Confidence = Field(
        Confidence.WEAK,
        description="strong, partial or weak (reports made before confidence existed read weak)",
    )
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


MIB = 1 << 20
GIB = 1 << 30


class AnalysisLimits(BaseModel):
    """How much one dump's analysis may take: a gzip-compressed upload of a few
    megabytes can expand to gigabytes (a bomb), and a reader handed such a file
    must refuse it instead of filling the worker's disk and memory. Defaults are
    sized for real dumps: goroutine dumps are text (10,000 goroutines make 10 MB),
    a full-memory minidump of hangtest is tens of MB, and a hung hangtest's core is
    1.2 GB, nearly all of it zeros (expanded sparse, so zeros take no disk).

    The controller's settings (``REPROFARM_ANALYSIS_*``) fill these in; the
    analyzer enforces them (``reprofarm_analyzer.bounded``)."""

    model_config = ConfigDict(frozen=True)

    max_text_bytes: int = Field(
        64 * MIB, gt=0, description="a goroutine dump (or anything that is no process dump)"
    )
    max_minidump_bytes: int = Field(
        512 * MIB, gt=0, description="a minidump: it is read into memory whole"
    )
    max_core_bytes: int = Field(
        16 * GIB, gt=0, description="a core's size, holes included (a Go core is mostly zeros)"
    )
    max_scratch_bytes: int = Field(
        1 * GIB, gt=0, description="disk an expanded dump may take (its non-zero data)"
    )
    memory_bytes: int = Field(
        2 * GIB, gt=0, description="the analysing process's data segment (RLIMIT_DATA)"
    )
    timeout_s: float = Field(
        300.0, gt=0, allow_inf_nan=False, description="one dump's expansion and analysis"
    )
