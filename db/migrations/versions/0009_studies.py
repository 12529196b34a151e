"""studies: jobs.kind, jobs.cells, jobs.study, jobs.decided_at; runs.control_chance,
runs.arm, runs.cell

A study is a job whose runs the worker creates as evidence arrives (issue 15). Its
cells are fixed at submit (``jobs.cells``); each run names its cell and, in a verify
study, its arm. ``jobs.study`` keeps the last decision the worker computed (a cache:
everything in it is recomputed from the runs). ``control_chance`` became an axis of
jobs, so a run carries its own; runs stored before keep NULL and are leased with their
job's single chance, as before.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import reprofarm_db.models
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=20), nullable=False, server_default="matrix")
        )
        batch.add_column(sa.Column("cells", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("study", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("decided_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("control_chance", sa.Float(), nullable=True))
        batch.add_column(sa.Column("arm", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("cell", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cell")
        batch.drop_column("arm")
        batch.drop_column("control_chance")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("decided_at")
        batch.drop_column("study")
        batch.drop_column("cells")
        batch.drop_column("kind")
