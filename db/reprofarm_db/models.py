"""Tables. One row per run *attempt*: a lost run stays lost, and its retry is a
new row pointing back at it, so nothing is ever counted twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both Postgres and SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# Named constraints: Alembic can then alter them on Postgres and SQLite alike.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def hardware_label(config: Any) -> str:
    """How a hardware configuration reads on the dashboard and in `stats` (from a row
    or from a select of its columns)."""
    vm = "" if config.hypervisor == "none" else f" on {config.hypervisor}"
    return f"{config.cpu_model} ({config.arch}, {config.logical_cpus} CPUs{vm}, {config.os})"


class HardwareConfig(Base):
    __tablename__ = "hardware_configs"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    os: Mapped[str] = mapped_column(String(20))
    os_version: Mapped[str] = mapped_column(String(100))
    arch: Mapped[str] = mapped_column(String(20))
    cpu_model: Mapped[str] = mapped_column(String(200))
    logical_cpus: Mapped[int]
    physical_cores: Mapped[int]
    hypervisor: Mapped[str] = mapped_column(String(40))
    description: Mapped[dict[str, Any]] = mapped_column(JSON)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def label(self) -> str:
        return hardware_label(self)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # No foreign key: tokens are created before and apart from agents (enrollment).
    agent_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    pools: Mapped[list[str]] = mapped_column(JSON, default=list)
    hardware_config_id: Mapped[int] = mapped_column(ForeignKey("hardware_configs.id"))
    target: Mapped[str] = mapped_column(String(40))
    logical_cpus: Mapped[int]
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    agent_version: Mapped[str] = mapped_column(String(60), default="unknown")
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    needs_reboot: Mapped[bool] = mapped_column(Boolean, default=False)
    current_run_id: Mapped[int | None] = mapped_column(Integer)
    # sha256 of the secret the machine sent at its first registration: the name is
    # bound to that machine (only it, or an admin, may register the name again).
    machine_secret_hash: Mapped[str | None] = mapped_column(String(64))
    last_reboot_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reboots: Mapped[int] = mapped_column(default=0)
    # reprofarm_protocol.controls.AgentHealth: set by its health checks (reprofarm_db.health)
    health: Mapped[str] = mapped_column(String(12), default="unknown", server_default="unknown")
    health_detail: Mapped[str] = mapped_column(Text, default="", server_default="")
    health_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Build(Base):
    __tablename__ = "builds"
    __table_args__ = (UniqueConstraint("go_version", "target", "source_sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    go_version: Mapped[str] = mapped_column(String(40))  # as asked: "1.27.3"
    toolchain_version: Mapped[str] = mapped_column(String(60))  # as built: "go1.27.3"
    target: Mapped[str] = mapped_column(String(40))
    source_sha256: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    fix_present: Mapped[bool] = mapped_column(Boolean)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    # An Idempotency-Key is the submitter's own: another token's key is another job.
    __table_args__ = (UniqueConstraint("submitted_by", "idempotency_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    submitted_by: Mapped[int | None] = mapped_column(Integer)  # the api token's id
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), index=True)
    skipped: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    targets: Mapped[list[str]] = mapped_column(JSON, default=list)
    priority: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Planning sent again for a job left queued or with pending runs (its plan or build
    # task lost with a killed worker): when, and how often (jobs.replan_stranded).
    replanned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replans: Mapped[int] = mapped_column(default=0)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A job that waits for agents (wait_for_agents_s): runs not leased by then expire.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # matrix (every run made at submit), or a study (verify, search) whose runs the
    # worker makes as evidence arrives (reprofarm_db.studies): its cells, fixed at
    # submit, and its last decision (a cache of what its runs say).
    kind: Mapped[str] = mapped_column(String(20), default="matrix", server_default="matrix")
    cells: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    study: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BuildRequest(Base):
    """A build an agent needed and no job planned (its target was unknown when the
    job was stored): asked once, again only after ``requested_at`` is old."""

    __tablename__ = "build_requests"
    __table_args__ = (UniqueConstraint("go_version", "target"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    go_version: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(40))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_priority", "status", "priority", "id"),
        Index("ix_runs_stats", "status", "hardware_config_id", "go_version"),
        # The lease queue's order, over ready runs only (migration 0006 says why).
        Index(
            "ix_runs_ready_queue",
            text("priority DESC"),
            "id",
            postgresql_where=text("status = 'ready'"),
            sqlite_where=text("status = 'ready'"),
        ),
        Index("ix_runs_job_status", "job_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(default=1)
    retry_of: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    status: Mapped[str] = mapped_column(String(20))
    priority: Mapped[int] = mapped_column(default=0)
    scenario: Mapped[str] = mapped_column(String(40))
    go_version: Mapped[str] = mapped_column(String(40))
    cpus: Mapped[int | None]  # None: all the agent's CPUs
    affinity: Mapped[str] = mapped_column(String(40))
    repeat_index: Mapped[int] = mapped_column(default=0)
    pool: Mapped[str | None] = mapped_column(String(100))
    required_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    avoid_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    hardware_config_id: Mapped[int | None] = mapped_column(ForeignKey("hardware_configs.id"))
    build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id"))
    min_cpus: Mapped[int | None]
    # NULL on runs stored before control_chance was an axis: their job's chance applies.
    control_chance: Mapped[float | None] = mapped_column(Float)
    arm: Mapped[str | None] = mapped_column(String(20))  # a verify study's baseline/candidate
    cell: Mapped[int | None]  # a study's cell: an index into jobs.cells
    selector: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # sha256 of the secret handed out with the lease: heartbeats, uploads and the
    # result must prove it (an agent's token alone does not name the attempt).
    lease_token_hash: Mapped[str | None] = mapped_column(String(64))
    leased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    iterations: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    late_result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The analyzer's verdict (reprofarm_protocol.analysis.Label): set from the run's
    # dumps (goroutine dump first, process dumps second), ``no-hang`` for a run that
    # passed or failed; NULL for a hung run whose dumps are not analysed yet (pending).
    label: Mapped[str | None] = mapped_column(String(40))
    signature: Mapped[str | None] = mapped_column(String(500))
    signature_key: Mapped[str | None] = mapped_column(String(16), index=True)
    # strong, partial or weak: the confidence of the report the label came from
    label_confidence: Mapped[str | None] = mapped_column(String(10))
    # reprofarm_protocol.controls.Discount: why this finished run does not count (a hang on
    # a negative control, a run of an unhealthy agent); NULL: it counts
    discount: Mapped[str | None] = mapped_column(String(20), index=True)

    # The status is the version every UPDATE of a run checks (``WHERE status = <as read>``):
    # a write decided on a stale read fails instead of winning (reprofarm_db.states).
    __mapper_args__ = {  # noqa: RUF012 - read once by the mapper, never mutated
        "version_id_col": status,
        "version_id_generator": False,
    }


class PoolSettings(Base):
    """An admin's controls for one pool (reprofarm_protocol.controls.PoolControls); a pool
    without a row has none. Pools themselves are just names agents register with."""

    __tablename__ = "pools"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    negative_control: Mapped[bool] = mapped_column(Boolean, default=False)
    canary_at_start: Mapped[bool] = mapped_column(Boolean, default=False)
    positive_control_every_s: Mapped[float | None] = mapped_column(Float)
    positive_control_chance: Mapped[float] = mapped_column(Float, default=1e-3)
    positive_control_duration_s: Mapped[float] = mapped_column(Float, default=2.0)
    go_version: Mapped[str] = mapped_column(String(40), default="1.27.3")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(100), default="")


class HealthCheck(Base):
    """One health check of one agent: a job of one control run pinned to it
    (reprofarm_db.health decides its outcome from the run and its dumps)."""

    __tablename__ = "health_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    trigger: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(Text, default="")


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ArtifactAnalysis(Base):
    """The analyzer's report on one uploaded dump (or why it could not read it).
    Re-analysis after a rules change overwrites it and records the new version."""

    __tablename__ = "analyses"

    id: Mapped[int] = mapped_column(primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), unique=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    label: Mapped[str | None] = mapped_column(String(40))  # None: the dump was unreadable
    signature: Mapped[str | None] = mapped_column(String(500))
    rules_version: Mapped[int]
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    # indexed: max(analyzed_at) is the dashboard's version of the analyses (views.changes)
    analyzed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    @property
    def confidence(self) -> str | None:
        """Kept inside the report's JSON (no column); None for an unreadable dump."""
        found = (self.report or {}).get("confidence")
        return str(found) if found is not None else None


ROLLUP_KEYS = (
    "hardware_config_id",
    "scenario",
    "go_version",
    "cpus",
    "affinity",
    "pool",
    "agent_id",
    "label",
    "signature_key",
    "control_chance",
)
ROLLUP_COUNTERS = ("passed", "hung", "failed", "errors", "lost", "iterations", "run_seconds")


class RunRollup(Base):
    """Statistics counters of one cell (reprofarm_db.rollups keeps them exact)."""

    __tablename__ = "run_rollups"
    __table_args__ = (UniqueConstraint(*ROLLUP_KEYS),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hardware_config_id: Mapped[int]
    scenario: Mapped[str] = mapped_column(String(40))
    go_version: Mapped[str] = mapped_column(String(40))
    cpus: Mapped[int]
    affinity: Mapped[str] = mapped_column(String(40))
    pool: Mapped[str] = mapped_column(String(100))
    agent_id: Mapped[int]
    label: Mapped[str] = mapped_column(String(40))
    signature_key: Mapped[str] = mapped_column(String(16))
    # -1: no chance of its own (hangtest's default, or a run stored before it was an axis)
    control_chance: Mapped[float] = mapped_column(Float)
    passed: Mapped[int] = mapped_column(BigInteger, default=0)
    hung: Mapped[int] = mapped_column(BigInteger, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    lost: Mapped[int] = mapped_column(BigInteger, default=0)
    iterations: Mapped[int] = mapped_column(BigInteger, default=0)
    run_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class Outbox(Base):
    """Celery tasks decided in a transaction, sent after it commits; a relay
    resends what the broker did not take (Redis down), so no job is lost."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    task: Mapped[str] = mapped_column(String(100))
    args: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class TriagedDump(Base):
    """A dump sent to ``POST /triage`` from outside the farm (a CI log, an issue) and
    kept because its sender asked (``keep=true``): it is the farm's "seen in CI" beside
    "reproduced here". Dumps not asked to be kept are analysed and forgotten."""

    __tablename__ = "triaged_dumps"

    id: Mapped[int] = mapped_column(primary_key=True)
    sent_by: Mapped[str] = mapped_column(String(100))  # the token's name
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str | None] = mapped_column(String(500))  # what the sender says it is
    kind: Mapped[str] = mapped_column(String(20))  # goroutines or minidump (its rules)
    label: Mapped[str] = mapped_column(String(40))
    signature: Mapped[str] = mapped_column(String(500))
    signature_key: Mapped[str] = mapped_column(String(16), index=True)
    confidence: Mapped[str] = mapped_column(String(10))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    size: Mapped[int]
    text_gz: Mapped[bytes] = mapped_column(LargeBinary)  # the dump as sent, gzip-compressed
    # The dump as sent, hashed: the same dump kept twice is stored once (unique).
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # The rules of its kind that made label and report: the worker re-analyses older ones.
    rules_version: Mapped[int] = mapped_column(default=0)
