"""images.source_path index: query files are looked up by path in bulk (pairs CSVs of stored files)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_images_source_path", "images", ["source_path"], unique=False, postgresql_using="hash")


def downgrade() -> None:
    op.drop_index("ix_images_source_path", table_name="images")
