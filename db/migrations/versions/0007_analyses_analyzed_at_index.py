"""index on analyses.analyzed_at: the dashboard's version of the analyses

A re-analysis replaces a report in place, so ``max(analyses.id)`` (the dashboard's
cache version of the analyses) did not move and pages kept the old labels. The
version now also holds ``max(analyzed_at)``, which every report written moves;
this index answers it without reading the table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_analyses_analyzed_at"), "analyses", ["analyzed_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_analyses_analyzed_at"), table_name="analyses")
