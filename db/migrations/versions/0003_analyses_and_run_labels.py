"""the analyzer's reports per artifact, and each run's label and signature

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import reprofarm_db.models
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analyses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("label", sa.String(length=40), nullable=True),
        sa.Column("signature", sa.String(length=500), nullable=True),
        sa.Column("rules_version", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("analyzed_at", reprofarm_db.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name=op.f("fk_analyses_artifact_id_artifacts")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_analyses_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analyses")),
        sa.UniqueConstraint("artifact_id", name=op.f("uq_analyses_artifact_id")),
    )
    op.create_index(op.f("ix_analyses_run_id"), "analyses", ["run_id"], unique=False)
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("label", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("signature", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("signature_key", sa.String(length=16), nullable=True))
        batch.create_index(op.f("ix_runs_signature_key"), ["signature_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index(op.f("ix_runs_signature_key"))
        batch.drop_column("signature_key")
        batch.drop_column("signature")
        batch.drop_column("label")
    op.drop_index(op.f("ix_analyses_run_id"), table_name="analyses")
    op.drop_table("analyses")
