"""Standing controls: pool settings, agent health, health checks, runs.discount

Issue 16: a pool can be a negative control (a hang of a bug scenario there is a harness
problem) and can schedule health checks (the capture canary at agent start, the positive
control on a schedule); an agent whose check fails is unhealthy, and a run it finishes
meanwhile carries ``discount`` and is not counted. Existing runs count (NULL), as before.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

import reprofarm_db.models
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pools",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("negative_control", sa.Boolean(), nullable=False),
        sa.Column("canary_at_start", sa.Boolean(), nullable=False),
        sa.Column("positive_control_every_s", sa.Float(), nullable=True),
        sa.Column("positive_control_chance", sa.Float(), nullable=False),
        sa.Column("positive_control_duration_s", sa.Float(), nullable=False),
        sa.Column("go_version", sa.String(length=40), nullable=False),
        sa.Column("updated_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_pools")),
    )
    op.create_table(
        "health_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("created_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_health_checks_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_health_checks_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_checks")),
        sa.UniqueConstraint("job_id", name=op.f("uq_health_checks_job_id")),
    )
    with op.batch_alter_table("health_checks") as batch:
        batch.create_index(batch.f("ix_health_checks_agent_id"), ["agent_id"], unique=False)
    with op.batch_alter_table("agents") as batch:
        batch.add_column(
            sa.Column("health", sa.String(length=12), server_default="unknown", nullable=False)
        )
        batch.add_column(sa.Column("health_detail", sa.Text(), server_default="", nullable=False))
        batch.add_column(
            sa.Column(
                "health_changed_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True
            )
        )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("discount", sa.String(length=20), nullable=True))
        batch.create_index(batch.f("ix_runs_discount"), ["discount"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index(batch.f("ix_runs_discount"))
        batch.drop_column("discount")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("health_changed_at")
        batch.drop_column("health_detail")
        batch.drop_column("health")
    with op.batch_alter_table("health_checks") as batch:
        batch.drop_index(batch.f("ix_health_checks_agent_id"))
    op.drop_table("health_checks")
    op.drop_table("pools")
