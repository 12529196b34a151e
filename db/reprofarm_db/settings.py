"""The controller's configuration (api, worker, beat): one pydantic-settings
class, every field settable as ``REPROFARM_<NAME>``. The agent has its own
(``reprofarm_agent.settings``): a lab machine knows nothing of these."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from reprofarm_protocol.analysis import AnalysisLimits

_LIMITS = AnalysisLimits()


class ControllerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REPROFARM_", extra="ignore")

    data_dir: Path = Field(
        default_factory=lambda: Path.home() / ".local" / "share" / "reprofarm",
        description="artifacts, builds, the embedded database and broker, local tokens",
    )
    database_url: str = Field("", description="default: SQLite in data_dir")
    broker_url: str = Field("", description="default: kombu's filesystem transport in data_dir")
    lease_s: float = Field(60.0, gt=0, description="a lease lasts this long without heartbeat")
    avoid_grace_s: float = Field(
        30.0, ge=0, description="a retried run waits this long before its lost agent may take it"
    )
    max_attempts: int = Field(3, ge=1, description="attempts per run before a lost run stays lost")
    max_runs_per_job: int = Field(10_000, ge=1)
    max_artifact_bytes: int = Field(8 << 30, gt=0, description="largest artifact accepted")
    max_artifacts_per_run: int = Field(
        16,
        ge=1,
        description="artifacts one run may upload: a hang leaves a goroutine dump, up to 5 "
        "process dumps (a job's process_dumps), stdout and the exports sidecar (8), with room "
        "for a retried delivery under other names",
    )
    max_run_artifact_bytes: int = Field(
        16 << 30,
        gt=0,
        description="bytes one run may upload, announced sizes of unfinished uploads included: "
        "two process dumps at the largest artifact size (gzipped Go cores take megabytes)",
    )
    abandoned_upload_s: float = Field(
        24 * 3600.0,
        gt=0,
        description="an unfinished upload announced longer ago than this, whose partial file "
        "has not been written for as long, is removed (rows and files) by the beat sweep",
    )
    max_body_bytes: int = Field(
        1 << 20, gt=0, description="largest request body, artifact uploads excepted (they stream)"
    )
    max_triage_bytes: int = Field(
        16 << 20,
        gt=0,
        description="largest dump POST /triage reads (in the request: 10 MB of goroutines take"
        " about 0.3 s of CPU)",
    )
    db_request_slots: int = Field(
        16,
        ge=1,
        le=1000,
        description="requests of one api process that use the database at once; its "
        "connection pool is this plus 4 (token checks, the outbox relay, the work re-check), "
        "with 4 more in overflow",
    )
    export_chunk_rows: int = Field(
        5_000,
        ge=1,
        le=1_000_000,
        description="runs an export reads per chunk, each in a short database slot of its "
        "own: what bounds its memory (one chunk, one Parquet row group; about 5 KB a run "
        "in the api process, bench/export.py)",
    )
    sweep_interval_s: float = Field(5.0, gt=0)
    metrics_token_required: bool = Field(
        False,
        description="/metrics asks for a viewer token (it is public by default, for scrapers "
        "on a trusted network)",
    )
    max_compare_pairs: int = Field(
        2000,
        ge=1,
        description="Fisher tests one /stats?compare request may run; beyond, a 422 asks for "
        "a narrower question",
    )
    replan_after_s: float = Field(
        300.0,
        gt=0,
        description="a job still queued, or with runs still pending, this long after it was "
        "submitted (or last re-planned) is planned again: its plan or build task was lost "
        "with a worker that died",
    )
    health_recheck_s: float = Field(
        900.0,
        gt=0,
        description="an unhealthy agent's health check is run again this often (docs/"
        "operations.md, standing controls); it leases nothing else meanwhile",
    )
    replan_max: int = Field(
        5,
        ge=0,
        description="re-plans of one job; after them, its runs still pending end expired "
        "with the builds that never came as the reason",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="signs the webhooks of studies that decided (HMAC-SHA256 of the body in "
        "X-Reprofarm-Signature); a study asks for a webhook only when this is set",
    )
    webhook_hosts: list[str] = Field(
        default_factory=list,
        description="hosts a study's webhook may name although they are not public (a "
        'receiver on the lab network: ["hooks.lab", "10.0.0.7"]); any other host must '
        "resolve only to public addresses (reprofarm_protocol.webhook_targets)",
    )
    webhook_attempts: int = Field(
        8, ge=1, le=100, description="a webhook's POSTs before it is given up (backoff doubles)"
    )
    work_recheck_s: float = Field(
        2.0,
        gt=0,
        description="idle agents' long-polls are woken when runs become ready; this is the "
        "safety re-check (one query per api process, not per agent)",
    )
    token_cache_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="each api process trusts a token it checked for this long without "
        "asking the database again, while it cannot hear revocations (no Redis, or its "
        "subscription is down); a revoked token is refused everywhere within this bound "
        "then. 0: check every request",
    )
    opentelemetry: bool = Field(
        False,
        description="FastAPI's OpenTelemetry spans, metrics and logs for every request "
        "(an OpenTelemetry SDK must be configured in the environment). Off, a request "
        "does not ask whether a provider is configured: that question cost 8% of an api "
        "process's CPU at 10,000 agents",
    )
    token_cache_listening_s: float = Field(
        300.0,
        ge=0,
        le=3600,
        description="how long a checked token is trusted while the api process is "
        "subscribed to the revocations published on Redis (they arrive at once; this bounds "
        "only a message lost on a connection that died unnoticed). 0: check every "
        "request while subscribed",
    )
    broker_visibility_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Redis broker: a task a dead worker took is given to another after this "
        "long; must exceed the longest task (a toolchain install and build)",
    )
    analysis_max_text_bytes: int = Field(
        _LIMITS.max_text_bytes, gt=0, description="largest goroutine dump (text) analysed"
    )
    analysis_max_minidump_bytes: int = Field(
        _LIMITS.max_minidump_bytes, gt=0, description="largest minidump analysed (read whole)"
    )
    analysis_max_core_bytes: int = Field(
        _LIMITS.max_core_bytes, gt=0, description="largest core analysed, holes included"
    )
    analysis_max_scratch_bytes: int = Field(
        _LIMITS.max_scratch_bytes,
        gt=0,
        description="disk one expanded dump may take (blocks of zeros are holes)",
    )
    analysis_memory_bytes: int = Field(
        _LIMITS.memory_bytes, gt=0, description="memory (RLIMIT_DATA) of one dump's analysis"
    )
    analysis_timeout_s: float = Field(
        _LIMITS.timeout_s, gt=0, description="one dump's expansion and analysis"
    )
    public_url: str = Field(
        "",
        pattern=r"^(https?://[^\s'\"`]+)?$",
        description="the controller's URL as lab machines reach it (https), written into the "
        "served install.ps1; without it the script is served only to a trusted Host "
        "(loopback or trusted_hosts), with the URL the request came to",
    )
    tls_cert_file: Path | None = Field(
        None,
        description="`reprofarm api` serves https with this certificate (PEM, chain first); "
        "needs tls_key_file. Agents send tokens: serve them over https, here or at a proxy",
    )
    tls_key_file: Path | None = Field(None, description="the private key of tls_cert_file (PEM)")
    trusted_hosts: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="without public_url, install.ps1 is templated with the URL of the request "
        "only when its Host is loopback or one of these names (JSON list); any other Host "
        "could be an attacker's, and the script would send lab machines' tokens there",
    )
    agent_wheels_dir: Path | None = Field(
        None,
        description="serve the agent wheels in this folder (one wheel per reprofarm package, "
        "a reprofarm_agent one among them) instead of building them from the sources",
    )
    release_signing_key: Path | None = Field(
        None,
        description="the Ed25519 private key (PEM, PKCS#8) that signs agent releases; "
        "default: data_dir/release-signing-key.pem, created at first use. Api processes "
        "that do not share a data dir must share this key: agents keep the public key "
        "they were installed with",
    )
    agent_source_dir: Path | None = Field(
        None,
        description="the repository whose protocol/ and agent-windows/ the agent wheels are "
        "built from; default: the one the api runs from",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> ControllerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            given, missing = (
                ("tls_cert_file", "tls_key_file")
                if self.tls_key_file is None
                else ("tls_key_file", "tls_cert_file")
            )
            raise ValueError(f"{missing}: needed with {given} (https takes both)")
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'reprofarm.sqlite').resolve()}"

    @property
    def wakeup_redis_url(self) -> str | None:
        """Where work wake-ups are published: the Redis broker, if the broker is Redis."""
        broker = self.celery_broker
        return broker if broker.startswith(("redis://", "rediss://")) else None

    @property
    def celery_broker(self) -> str:
        return self.broker_url or "filesystem://"

    def celery_conf(self) -> dict[str, object]:
        """Celery settings shared by whoever sends tasks (api) and runs them (worker)."""
        conf: dict[str, object] = {
            "broker_url": self.celery_broker,
            "task_acks_late": True,  # a worker that dies mid-task leaves the task for another
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "broker_connection_retry_on_startup": True,
            "task_ignore_result": True,
        }
        if self.celery_broker.startswith(("redis://", "rediss://")):
            # An unacknowledged task (acks_late) of a worker killed mid-task comes
            # back only after the visibility timeout: kombu's default is an hour.
            # Tasks are idempotent, so one redelivered while still running is safe.
            # Workers look for such tasks every unacked_restore_interval seconds
            # (kombu's default scans only every 10th time: about 100 s).
            conf["broker_transport_options"] = {
                "visibility_timeout": self.broker_visibility_timeout_s,
                "unacked_restore_interval": max(1, min(10, int(self.broker_visibility_timeout_s))),
                "unacked_restore_throttle": 1,
            }
        if self.celery_broker.startswith("filesystem"):
            folder = str(self.broker_dir.resolve())
            conf["broker_transport_options"] = {
                "data_folder_in": folder,
                "data_folder_out": folder,
                "processed_folder": folder + "-processed",
                "store_processed": False,
                # The exchange tables: unset, kombu writes them to ./control
                # in whatever directory the process was started from.
                "control_folder": folder + "-control",
            }
        return conf

    def analysis_limits(self) -> AnalysisLimits:
        """What one dump's analysis may take (the worker's and ``reprofarm analyze``'s)."""
        return AnalysisLimits(
            max_text_bytes=self.analysis_max_text_bytes,
            max_minidump_bytes=self.analysis_max_minidump_bytes,
            max_core_bytes=self.analysis_max_core_bytes,
            max_scratch_bytes=self.analysis_max_scratch_bytes,
            memory_bytes=self.analysis_memory_bytes,
            timeout_s=self.analysis_timeout_s,
        )

    @property
    def artifact_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def build_cache_dir(self) -> Path:
        return self.data_dir / "builds"

    @property
    def broker_dir(self) -> Path:
        """Messages; ``broker-processed/`` and ``broker-control/`` (the
        exchange tables) sit beside it."""
        return self.data_dir / "broker"
