"""run_rollups.control_chance: the control chance is a statistics key

Since 0009 a run carries its own control chance (an axis like cpus); statistics and
``explain`` group by it, so the rollup cells are split by it too. The key holds no NULL
(a unique index would let NULL cells repeat): ``-1`` is "no chance of its own"
(reprofarm_db.rollups.NO_CHANCE). The cells are rebuilt from the runs, the same
aggregation as reprofarm_db.rollups.rebuild.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

OLD_KEYS = (
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
UNIQUE = "uq_run_rollups_hardware_config_id"
_COUNTERS = (
    "SUM(CASE WHEN status = 'passed' THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN status = 'hung' THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN status = 'lost' THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN status IN ('passed', 'hung', 'failed') THEN iterations ELSE 0 END), "
    "SUM(CASE WHEN status IN ('passed', 'hung', 'failed') THEN duration_s ELSE 0 END) "
)
_KEYS = (
    "COALESCE(hardware_config_id, 0), scenario, go_version, COALESCE(cpus, 0), affinity, "
    "COALESCE(pool, ''), COALESCE(agent_id, 0), "
    "COALESCE(label, CASE WHEN status = 'hung' THEN 'pending' ELSE '' END), "
    "COALESCE(signature_key, CASE WHEN status = 'hung' THEN 'pending' ELSE '' END)"
)


def _refill(keys: str, key_columns: str) -> None:
    op.execute("DELETE FROM run_rollups")
    op.execute(  # constants only
        f"INSERT INTO run_rollups ({key_columns}, passed, hung, failed, errors, lost, "
        f"iterations, run_seconds) SELECT {keys}, {_COUNTERS}"
        "FROM runs WHERE status IN ('passed', 'hung', 'failed', 'error', 'lost') "
        f"GROUP BY {keys}"
    )


def upgrade() -> None:
    op.execute("DELETE FROM run_rollups")
    with op.batch_alter_table("run_rollups") as batch:
        batch.drop_constraint(UNIQUE, type_="unique")
        batch.add_column(sa.Column("control_chance", sa.Float(), nullable=False))
        batch.create_unique_constraint(UNIQUE, [*OLD_KEYS, "control_chance"])
    _refill(f"{_KEYS}, COALESCE(control_chance, -1.0)", ", ".join((*OLD_KEYS, "control_chance")))


def downgrade() -> None:
    op.execute("DELETE FROM run_rollups")
    with op.batch_alter_table("run_rollups") as batch:
        batch.drop_constraint(UNIQUE, type_="unique")
        batch.drop_column("control_chance")
        batch.create_unique_constraint(UNIQUE, list(OLD_KEYS))
    _refill(_KEYS, ", ".join(OLD_KEYS))
