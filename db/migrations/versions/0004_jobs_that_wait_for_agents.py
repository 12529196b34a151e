"""jobs that wait for agents: their expiry, and builds asked for by agents; agents'
reboots

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import reprofarm_db.models
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(
            sa.Column(
                "last_reboot_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch.add_column(sa.Column("reboots", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("expires_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch.create_index(op.f("ix_jobs_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "build_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("go_version", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=40), nullable=False),
        sa.Column("requested_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_build_requests")),
        sa.UniqueConstraint("go_version", "target", name=op.f("uq_build_requests_go_version")),
    )


def downgrade() -> None:
    op.drop_table("build_requests")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("reboots")
        batch.drop_column("last_reboot_at")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index(op.f("ix_jobs_expires_at"))
        batch.drop_column("expires_at")
