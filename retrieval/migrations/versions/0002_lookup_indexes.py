"""lookup indexes: image status / job / label, failures by job, embeddings by version, pairs by set, runs by version

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_images_status", "images", ["status"]),
    ("ix_images_job_id", "images", ["job_id"]),
    ("ix_images_dataset_id_label", "images", ["dataset_id", "label"]),
    ("ix_ingest_failures_job_id", "ingest_failures", ["job_id"]),
    ("ix_embeddings_encoder_version_id", "embeddings", ["encoder_version_id"]),
    ("ix_labeled_pairs_pair_set_id", "labeled_pairs", ["pair_set_id"]),
    ("ix_eval_runs_encoder_version_id", "eval_runs", ["encoder_version_id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
