"""initial schema: datasets, slides, images, encoder versions, embeddings, jobs, pair sets, eval runs

Revision ID: 0001
Revises: 
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('datasets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('name', name=op.f('uq_datasets_name'))
    )
    op.create_table('encoder_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('checkpoint_path', sa.Text(), nullable=False),
    sa.Column('checkpoint_sha256', sa.String(length=64), nullable=False),
    sa.Column('backbone', sa.String(length=64), nullable=False),
    sa.Column('representation', sa.String(length=32), nullable=False),
    sa.Column('dim', sa.Integer(), nullable=False),
    sa.Column('image_size', sa.Integer(), nullable=False),
    sa.Column('training_config', sa.JSON(), nullable=True),
    sa.Column('threshold_cos', sa.Float(), nullable=True),
    sa.Column('calibration', sa.JSON(), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('collection', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_encoder_versions')),
    sa.UniqueConstraint('collection', name=op.f('uq_encoder_versions_collection')),
    sa.UniqueConstraint('name', name=op.f('uq_encoder_versions_name'))
    )
    op.create_table('pair_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pair_sets')),
    sa.UniqueConstraint('name', name=op.f('uq_pair_sets_name'))
    )
    op.create_table('eval_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('encoder_version_id', sa.Integer(), nullable=False),
    sa.Column('pair_set_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("kind IN ('calibrate', 'evaluate')", name=op.f('ck_eval_runs_kind')),
    sa.ForeignKeyConstraint(['encoder_version_id'], ['encoder_versions.id'], name=op.f('fk_eval_runs_encoder_version_id_encoder_versions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['pair_set_id'], ['pair_sets.id'], name=op.f('fk_eval_runs_pair_set_id_pair_sets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_eval_runs'))
    )
    op.create_table('ingest_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=True),
    sa.Column('encoder_version_id', sa.Integer(), nullable=True),
    sa.Column('sources', sa.JSON(), nullable=True),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("kind IN ('ingest', 'reembed')", name=op.f('ck_ingest_jobs_kind')),
    sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name=op.f('ck_ingest_jobs_status')),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_ingest_jobs_dataset_id_datasets'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['encoder_version_id'], ['encoder_versions.id'], name=op.f('fk_ingest_jobs_encoder_version_id_encoder_versions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ingest_jobs'))
    )
    op.create_table('slides',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('content_hash', sa.String(length=128), nullable=False),
    sa.Column('format', sa.String(length=64), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('level_count', sa.Integer(), nullable=True),
    sa.Column('mpp_x', sa.Float(), nullable=True),
    sa.Column('mpp_y', sa.Float(), nullable=True),
    sa.Column('magnification', sa.Float(), nullable=True),
    sa.Column('mpp_source', sa.String(length=16), nullable=False),
    sa.Column('tissue_fraction', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("mpp_source IN ('metadata', 'default', 'user')", name=op.f('ck_slides_mpp_source')),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_slides_dataset_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slides')),
    sa.UniqueConstraint('dataset_id', 'content_hash', name=op.f('uq_slides_dataset_id_content_hash'))
    )
    op.create_table('images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=128), nullable=False),
    sa.Column('source_path', sa.Text(), nullable=False),
    sa.Column('slide_id', sa.Integer(), nullable=True),
    sa.Column('level', sa.Integer(), nullable=True),
    sa.Column('x', sa.Integer(), nullable=True),
    sa.Column('y', sa.Integer(), nullable=True),
    sa.Column('tile_size', sa.Integer(), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('label', sa.String(length=200), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'done', 'failed')", name=op.f('ck_images_status')),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_images_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['ingest_jobs.id'], name=op.f('fk_images_job_id_ingest_jobs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['slide_id'], ['slides.id'], name=op.f('fk_images_slide_id_slides'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_images')),
    sa.UniqueConstraint('dataset_id', 'content_hash', name=op.f('uq_images_dataset_id_content_hash')),
    sa.UniqueConstraint('slide_id', 'level', 'x', 'y', 'tile_size', name=op.f('uq_images_slide_id_level_x_y_tile_size'))
    )
    op.create_table('ingest_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('source_path', sa.Text(), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("stage IN ('read', 'decode', 'validate', 'tile', 'embed', 'store')", name=op.f('ck_ingest_failures_stage')),
    sa.ForeignKeyConstraint(['job_id'], ['ingest_jobs.id'], name=op.f('fk_ingest_failures_job_id_ingest_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ingest_failures'))
    )
    op.create_table('embeddings',
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('encoder_version_id', sa.Integer(), nullable=False),
    sa.Column('point_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['encoder_version_id'], ['encoder_versions.id'], name=op.f('fk_embeddings_encoder_version_id_encoder_versions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_embeddings_image_id_images'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('image_id', 'encoder_version_id', name=op.f('pk_embeddings'))
    )
    op.create_table('labeled_pairs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pair_set_id', sa.Integer(), nullable=False),
    sa.Column('image_a_id', sa.Integer(), nullable=False),
    sa.Column('image_b_id', sa.Integer(), nullable=False),
    sa.Column('same', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['image_a_id'], ['images.id'], name=op.f('fk_labeled_pairs_image_a_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['image_b_id'], ['images.id'], name=op.f('fk_labeled_pairs_image_b_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['pair_set_id'], ['pair_sets.id'], name=op.f('fk_labeled_pairs_pair_set_id_pair_sets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labeled_pairs'))
    )


def downgrade() -> None:
    op.drop_table('labeled_pairs')
    op.drop_table('embeddings')
    op.drop_table('ingest_failures')
    op.drop_table('images')
    op.drop_table('slides')
    op.drop_table('ingest_jobs')
    op.drop_table('eval_runs')
    op.drop_table('pair_sets')
    op.drop_table('encoder_versions')
    op.drop_table('datasets')
