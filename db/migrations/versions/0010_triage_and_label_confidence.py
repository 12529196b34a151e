"""triaged_dumps (dumps sent to POST /triage and kept) and runs.label_confidence

Issue 17: a dump triaged from outside the farm is kept, with who sent it and when, only
when its sender asks, so the farm can show "seen in CI" beside "reproduced here"; and a
run's label carries the confidence of the report it came from (strong, partial, weak).
Existing runs keep NULL until the worker re-analyses their dumps (RULES_VERSION 2).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import reprofarm_db.models
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("label_confidence", sa.String(length=10), nullable=True))
    op.create_table(
        "triaged_dumps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sent_by", sa.String(length=100), nullable=False),
        sa.Column("sent_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=True),
        sa.Column("label", sa.String(length=40), nullable=False),
        sa.Column("signature", sa.String(length=500), nullable=False),
        sa.Column("signature_key", sa.String(length=16), nullable=False),
        sa.Column("confidence", sa.String(length=10), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("text_gz", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_triaged_dumps")),
    )
    with op.batch_alter_table("triaged_dumps") as batch:
        batch.create_index(
            batch.f("ix_triaged_dumps_signature_key"), ["signature_key"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("triaged_dumps") as batch:
        batch.drop_index(batch.f("ix_triaged_dumps_signature_key"))
    op.drop_table("triaged_dumps")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("label_confidence")
