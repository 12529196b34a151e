"""jobs.replanned_at and jobs.replans: planning sent again for stranded jobs

A worker killed while it planned or built a job (or, in the embedded mode, a task
kombu's file transport handed to a worker that died) left the job queued, its runs
pending, forever. The sweep now sends planning again for such a job after
``REPROFARM_REPLAN_AFTER_S``, up to ``REPROFARM_REPLAN_MAX`` times; these columns say
when it last did and how often.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import reprofarm_db.models
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("replanned_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("replans", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("replans")
        batch.drop_column("replanned_at")
