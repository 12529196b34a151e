"""statistics rollups: counters per cell, filled from the existing runs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

KEYS = (
    "hardware_config_id",
    "scenario",
    "go_version",
    "cpus",
    "affinity",
    "pool",
    "agent_id",
    "label",
    "signature_key",
)


def upgrade() -> None:
    op.create_table(
        "run_rollups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hardware_config_id", sa.Integer(), nullable=False),
        sa.Column("scenario", sa.String(length=40), nullable=False),
        sa.Column("go_version", sa.String(length=40), nullable=False),
        sa.Column("cpus", sa.Integer(), nullable=False),
        sa.Column("affinity", sa.String(length=40), nullable=False),
        sa.Column("pool", sa.String(length=100), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=40), nullable=False),
        sa.Column("signature_key", sa.String(length=16), nullable=False),
        sa.Column("passed", sa.BigInteger(), nullable=False),
        sa.Column("hung", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("lost", sa.BigInteger(), nullable=False),
        sa.Column("iterations", sa.BigInteger(), nullable=False),
        sa.Column("run_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_rollups")),
        sa.UniqueConstraint(*KEYS, name=op.f("uq_run_rollups_hardware_config_id")),
    )
    # Existing runs: the same aggregation as reprofarm_db.rollups.rebuild.
    op.execute(
        "INSERT INTO run_rollups (hardware_config_id, scenario, go_version, cpus, affinity, "
        "pool, agent_id, label, signature_key, passed, hung, failed, errors, lost, iterations, "
        "run_seconds) SELECT COALESCE(hardware_config_id, 0), scenario, go_version, "
        "COALESCE(cpus, 0), affinity, COALESCE(pool, ''), COALESCE(agent_id, 0), "
        "COALESCE(label, CASE WHEN status = 'hung' THEN 'pending' ELSE '' END), "
        "COALESCE(signature_key, CASE WHEN status = 'hung' THEN 'pending' ELSE '' END), "
        "SUM(CASE WHEN status = 'passed' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status = 'hung' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status = 'lost' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status IN ('passed', 'hung', 'failed') THEN iterations ELSE 0 END), "
        "SUM(CASE WHEN status IN ('passed', 'hung', 'failed') THEN duration_s ELSE 0 END) "
        "FROM runs WHERE status IN ('passed', 'hung', 'failed', 'error', 'lost') "
        "GROUP BY COALESCE(hardware_config_id, 0), scenario, go_version, COALESCE(cpus, 0), "
        "affinity, COALESCE(pool, ''), COALESCE(agent_id, 0), "
        "COALESCE(label, CASE WHEN status = 'hung' THEN 'pending' ELSE '' END), "
        "COALESCE(signature_key, CASE WHEN status = 'hung' THEN 'pending' ELSE '' END)"
    )


def downgrade() -> None:
    op.drop_table("run_rollups")
