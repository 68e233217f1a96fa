"""image group: patient / case / slide / source tile as one indexed column, backfilled from slides and metadata

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Metadata keys a manifest stored before this revision, most specific grouping first (see retrieval.groups).
_EXTRA_KEYS = ("group", "patient", "case", "slide_name")
_BATCH = 5000


def _group_of(slide_id: Any, extra: Any) -> str | None:
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            extra = None
    if isinstance(extra, dict):
        for key in _EXTRA_KEYS:
            value = extra.get(key)
            if value not in (None, ""):
                return str(value)[:200]
    return f"slide:{int(slide_id)}" if slide_id is not None else None


def upgrade() -> None:
    op.add_column("images", sa.Column("group", sa.String(length=200), nullable=True))
    op.create_index("ix_images_dataset_id_group", "images", ["dataset_id", "group"], unique=False)
    bind = op.get_bind()
    images = sa.table(
        "images", sa.column("id", sa.Integer), sa.column("slide_id", sa.Integer), sa.column("extra", sa.JSON),
        sa.column("group", sa.String),
    )  # fmt: skip
    last = 0
    while True:
        rows = bind.execute(
            sa.select(images.c.id, images.c.slide_id, images.c.extra)
            .where(images.c.id > last, sa.or_(images.c.slide_id.is_not(None), images.c.extra.is_not(None)))
            .order_by(images.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        last = int(rows[-1][0])
        updates = [{"b_id": r[0], "b_group": g} for r in rows if (g := _group_of(r[1], r[2])) is not None]
        if updates:
            bind.execute(
                images.update().where(images.c.id == sa.bindparam("b_id")).values(group=sa.bindparam("b_group")),
                updates,
            )


def downgrade() -> None:
    op.drop_index("ix_images_dataset_id_group", table_name="images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("group")
