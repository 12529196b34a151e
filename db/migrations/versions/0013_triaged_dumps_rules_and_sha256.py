"""triaged_dumps.sha256, .kind and .rules_version; runs.label_confidence of finished runs

Kept triaged dumps are re-analysed after a rules change like the farm's own dumps: each
carries its kind and the version of that kind's rules that made its report. Existing rows
get ``rules_version = 0``, so the worker's next re-analysis (``reprofarm db reanalyze``,
the ``reprofarm.reanalyze`` task) redoes them all from ``text_gz``.

The same dump kept twice is stored once: ``sha256`` (of the dump as sent, computed here
from ``text_gz`` for existing rows) is unique. Copies kept twice before this revision are
folded into the earliest one (the later copies' rows, identical bytes, are deleted; their
sender and source are lost): "seen in CI" counted them twice.

And a nit of 0010: runs that passed or failed before it kept ``label_confidence`` NULL;
their ``no-hang`` comes from the result, which is ``strong`` (as
``reprofarm_db.analyses.result_labels`` sets it now).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

import gzip
import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_dumps = sa.table(
    "triaged_dumps",
    sa.column("id", sa.Integer()),
    sa.column("report", sa.JSON()),
    sa.column("text_gz", sa.LargeBinary()),
    sa.column("sha256", sa.String()),
    sa.column("kind", sa.String()),
)


def _fill() -> None:
    """sha256 and kind of every existing row, one row in memory at a time (a kept dump
    may be megabytes); later copies of the same bytes deleted."""
    bind = op.get_bind()
    seen: set[str] = set()
    ids = bind.execute(sa.select(_dumps.c.id).order_by(_dumps.c.id)).scalars().all()
    for row_id in ids:
        report, text_gz = bind.execute(
            sa.select(_dumps.c.report, _dumps.c.text_gz).where(_dumps.c.id == row_id)
        ).one()
        digest = hashlib.sha256(gzip.decompress(text_gz)).hexdigest()
        if digest in seen:
            bind.execute(sa.delete(_dumps).where(_dumps.c.id == row_id))
            continue
        seen.add(digest)
        kind = (report or {}).get("kind") or "goroutines"
        bind.execute(
            sa.update(_dumps).where(_dumps.c.id == row_id).values(sha256=digest, kind=kind)
        )


def upgrade() -> None:
    with op.batch_alter_table("triaged_dumps") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("rules_version", sa.Integer(), nullable=False, server_default="0")
        )
    _fill()
    with op.batch_alter_table("triaged_dumps") as batch:
        batch.alter_column("kind", existing_type=sa.String(length=20), nullable=False)
        batch.alter_column("sha256", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("rules_version", existing_type=sa.Integer(), server_default=None)
        batch.create_unique_constraint(batch.f("uq_triaged_dumps_sha256"), ["sha256"])
    op.execute(
        "UPDATE runs SET label_confidence = 'strong' WHERE status IN ('passed', 'failed')"
        " AND label = 'no-hang' AND label_confidence IS NULL"
    )


def downgrade() -> None:
    # The confidence of finished runs stays 'strong': it is true under 0010 too.
    with op.batch_alter_table("triaged_dumps") as batch:
        batch.drop_constraint(batch.f("uq_triaged_dumps_sha256"), type_="unique")
        batch.drop_column("rules_version")
        batch.drop_column("sha256")
        batch.drop_column("kind")
