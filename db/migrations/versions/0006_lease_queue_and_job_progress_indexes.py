"""indexes for the lease queue and for a job's open runs

The lease query orders ready runs by ``priority DESC, id``: the mixed directions
could not use (status, priority, id), so every claim sorted all ready runs (93 ms
at 10,000). A partial index on exactly that order holds only ready runs.
Recording a result asks whether the job still has an open run: (job_id, status)
answers without reading the job's other runs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

READY = sa.text("status = 'ready'")


def upgrade() -> None:
    op.create_index(
        "ix_runs_ready_queue",
        "runs",
        [sa.text("priority DESC"), "id"],
        postgresql_where=READY,
        sqlite_where=READY,
    )
    op.create_index("ix_runs_job_status", "runs", ["job_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_runs_job_status", table_name="runs")
    op.drop_index("ix_runs_ready_queue", table_name="runs")
