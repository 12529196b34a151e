"""agents bound to their machine, lease secrets, idempotency keys per submitter

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("machine_secret_hash", sa.String(length=64), nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("lease_token_hash", sa.String(length=64), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("submitted_by", sa.Integer(), nullable=True))
        batch.drop_constraint("uq_jobs_idempotency_key", type_="unique")
        batch.create_unique_constraint(
            op.f("uq_jobs_submitted_by"), ["submitted_by", "idempotency_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("uq_jobs_submitted_by"), type_="unique")
        batch.create_unique_constraint("uq_jobs_idempotency_key", ["idempotency_key"])
        batch.drop_column("submitted_by")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lease_token_hash")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("machine_secret_hash")
