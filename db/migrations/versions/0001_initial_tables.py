"""initial tables

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import reprofarm_db.models
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("created_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "builds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("go_version", sa.String(length=40), nullable=False),
        sa.Column("toolchain_version", sa.String(length=60), nullable=False),
        sa.Column("target", sa.String(length=40), nullable=False),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("fix_present", sa.Boolean(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_builds")),
        sa.UniqueConstraint(
            "go_version", "target", "source_sha256", name=op.f("uq_builds_go_version")
        ),
    )
    op.create_table(
        "hardware_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("os", sa.String(length=20), nullable=False),
        sa.Column("os_version", sa.String(length=100), nullable=False),
        sa.Column("arch", sa.String(length=20), nullable=False),
        sa.Column("cpu_model", sa.String(length=200), nullable=False),
        sa.Column("logical_cpus", sa.Integer(), nullable=False),
        sa.Column("physical_cores", sa.Integer(), nullable=False),
        sa.Column("hypervisor", sa.String(length=40), nullable=False),
        sa.Column("description", sa.JSON(), nullable=False),
        sa.Column("first_seen", reprofarm_db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hardware_configs")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_hardware_configs_fingerprint")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("skipped", sa.JSON(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("created_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("planned_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_jobs_idempotency_key")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_status"), ["status"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=100), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("created_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_sent_at"), ["sent_at"], unique=False)

    op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("pools", sa.JSON(), nullable=False),
        sa.Column("hardware_config_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=40), nullable=False),
        sa.Column("logical_cpus", sa.Integer(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("agent_version", sa.String(length=60), nullable=False),
        sa.Column("registered_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen", reprofarm_db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("needs_reboot", sa.Boolean(), nullable=False),
        sa.Column("current_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["hardware_config_id"],
            ["hardware_configs.id"],
            name=op.f("fk_agents_hardware_config_id_hardware_configs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("name", name=op.f("uq_agents_name")),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("retry_of", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("scenario", sa.String(length=40), nullable=False),
        sa.Column("go_version", sa.String(length=40), nullable=False),
        sa.Column("cpus", sa.Integer(), nullable=True),
        sa.Column("affinity", sa.String(length=40), nullable=False),
        sa.Column("repeat_index", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(length=100), nullable=True),
        sa.Column("required_agent_id", sa.Integer(), nullable=True),
        sa.Column("avoid_agent_id", sa.Integer(), nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("hardware_config_id", sa.Integer(), nullable=True),
        sa.Column("build_id", sa.Integer(), nullable=True),
        sa.Column("min_cpus", sa.Integer(), nullable=True),
        sa.Column("selector", sa.JSON(), nullable=False),
        sa.Column("ready_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "lease_expires_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("leased_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("iterations", sa.BigInteger(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("late_result", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name=op.f("fk_runs_agent_id_agents")),
        sa.ForeignKeyConstraint(
            ["avoid_agent_id"], ["agents.id"], name=op.f("fk_runs_avoid_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(["build_id"], ["builds.id"], name=op.f("fk_runs_build_id_builds")),
        sa.ForeignKeyConstraint(
            ["hardware_config_id"],
            ["hardware_configs.id"],
            name=op.f("fk_runs_hardware_config_id_hardware_configs"),
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_runs_job_id_jobs")),
        sa.ForeignKeyConstraint(
            ["required_agent_id"], ["agents.id"], name=op.f("fk_runs_required_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(["retry_of"], ["runs.id"], name=op.f("fk_runs_retry_of_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_job_id"), ["job_id"], unique=False)
        batch_op.create_index(
            "ix_runs_stats", ["status", "hardware_config_id", "go_version"], unique=False
        )
        batch_op.create_index("ix_runs_status_priority", ["status", "priority", "id"], unique=False)

    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_artifacts_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("run_id", "name", name=op.f("uq_artifacts_run_id")),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_run_id"))

    op.drop_table("artifacts")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_status_priority")
        batch_op.drop_index("ix_runs_stats")
        batch_op.drop_index(batch_op.f("ix_runs_job_id"))
        batch_op.drop_index(batch_op.f("ix_runs_agent_id"))

    op.drop_table("runs")
    op.drop_table("agents")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_sent_at"))

    op.drop_table("outbox")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_status"))

    op.drop_table("jobs")
    op.drop_table("hardware_configs")
    op.drop_table("builds")
    op.drop_table("api_tokens")
