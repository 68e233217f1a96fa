"""SQL metadata: SQLAlchemy 2 typed ORM.

The schema is created and upgraded by the Alembic migrations in ``retrieval/migrations`` (``retrieval.db.migrate``),
never by ``create_all`` at run time. Keep this file and the newest migration in step (``tests/retrieval`` checks it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

IMAGE_STATUSES = ("pending", "done", "failed")
JOB_KINDS = ("ingest", "reembed")
JOB_STATUSES = ("queued", "running", "done", "failed")
FAILURE_STAGES = ("read", "decode", "validate", "tile", "embed", "store")
MPP_SOURCES = ("metadata", "default", "user")
EVAL_KINDS = ("calibrate", "evaluate")


def utcnow() -> datetime:
    """Timezone-aware now (UTC)."""
    return datetime.now(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now(), nullable=False)


class Dataset(Base):
    """A named collection of images (a folder, a cohort, a slide set)."""

    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    created_at: Mapped[datetime] = _created()


class Slide(Base):
    """A whole-slide image file; its tiles are rows of :class:`Image` with ``slide_id`` set."""

    __tablename__ = "slides"
    __table_args__ = (
        UniqueConstraint("dataset_id", "content_hash"),
        CheckConstraint(_in("mpp_source", MPP_SOURCES), name="mpp_source"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False)
    path: Mapped[str] = mapped_column(Text, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(128), nullable=False)
    format: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    level_count: Mapped[int | None] = mapped_column(Integer)
    mpp_x: Mapped[float | None] = mapped_column(Float)
    mpp_y: Mapped[float | None] = mapped_column(Float)
    magnification: Mapped[float | None] = mapped_column(Float)
    mpp_source: Mapped[str] = mapped_column(String(16), nullable=False, default="metadata")
    tissue_fraction: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = _created()

    dataset: Mapped[Dataset] = relationship()


class Image(Base):
    """An image file or a slide tile (``slide_id`` + ``level``/``x``/``y``/``tile_size``), with its ``group``."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("dataset_id", "content_hash"),
        UniqueConstraint("slide_id", "level", "x", "y", "tile_size"),
        CheckConstraint(_in("status", IMAGE_STATUSES), name="status"),
        Index("ix_images_dataset_id_label", "dataset_id", "label"),
        # query files are looked up by path in bulk (retrieval.resolve.stored_ids_by_path); a hash index on
        # PostgreSQL (equality only, no btree row-size limit for long paths), a plain one on SQLite
        Index("ix_images_source_path", "source_path", postgresql_using="hash"),
        Index("ix_images_dataset_id_group", "dataset_id", "group"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False)
    content_hash: Mapped[str] = mapped_column(String(128), nullable=False)
    source_path: Mapped[str] = mapped_column(Text, nullable=False)
    slide_id: Mapped[int | None] = mapped_column(ForeignKey("slides.id", ondelete="CASCADE"))
    level: Mapped[int | None] = mapped_column(Integer)
    x: Mapped[int | None] = mapped_column(Integer)
    y: Mapped[int | None] = mapped_column(Integer)
    tile_size: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(String(200))
    #: patient / case / slide / source tile: images of one group are never on both sides of a split, never paired
    #: with each other and never each other's top-k neighbours in evaluation (see ``retrieval.groups``)
    group: Mapped[str | None] = mapped_column(String(200))
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("ingest_jobs.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, server_default=func.now(), nullable=False
    )

    dataset: Mapped[Dataset] = relationship()
    slide: Mapped[Slide | None] = relationship()


class EncoderVersion(Base):
    """A registered encoder checkpoint; its vectors live in Qdrant collection ``collection``."""

    __tablename__ = "encoder_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    checkpoint_path: Mapped[str] = mapped_column(Text, nullable=False)
    checkpoint_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    backbone: Mapped[str] = mapped_column(String(64), nullable=False)
    representation: Mapped[str] = mapped_column(String(32), nullable=False)
    dim: Mapped[int] = mapped_column(Integer, nullable=False)
    image_size: Mapped[int] = mapped_column(Integer, nullable=False)
    training_config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    threshold_cos: Mapped[float | None] = mapped_column(Float)
    calibration: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    collection: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    created_at: Mapped[datetime] = _created()


class Embedding(Base):
    """The record that an image's vector is stored in the encoder version's collection."""

    __tablename__ = "embeddings"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    encoder_version_id: Mapped[int] = mapped_column(
        ForeignKey("encoder_versions.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    point_id: Mapped[str] = mapped_column(String(36), nullable=False)
    created_at: Mapped[datetime] = _created()


class IngestJob(Base):
    """One ingestion or re-embedding job with its counters and timings."""

    __tablename__ = "ingest_jobs"
    __table_args__ = (
        CheckConstraint(_in("kind", JOB_KINDS), name="kind"),
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="ingest")
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    encoder_version_id: Mapped[int | None] = mapped_column(ForeignKey("encoder_versions.id", ondelete="SET NULL"))
    sources: Mapped[list[Any] | None] = mapped_column(JSON)
    total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    skipped: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)


class IngestFailure(Base):
    """One source that failed during a job, with the stage and reason."""

    __tablename__ = "ingest_failures"
    __table_args__ = (CheckConstraint(_in("stage", FAILURE_STAGES), name="stage"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("ingest_jobs.id", ondelete="CASCADE"), nullable=False, index=True)
    source_path: Mapped[str] = mapped_column(Text, nullable=False)
    stage: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _created()


class PairSet(Base):
    """A named set of labeled pairs (from a CSV or generated from labels)."""

    __tablename__ = "pair_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _created()


class LabeledPair(Base):
    """Two stored images and whether they are the same category."""

    __tablename__ = "labeled_pairs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pair_set_id: Mapped[int] = mapped_column(ForeignKey("pair_sets.id", ondelete="CASCADE"), nullable=False, index=True)
    image_a_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), nullable=False)
    image_b_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), nullable=False)
    same: Mapped[bool] = mapped_column(Boolean, nullable=False)


class EvalRun(Base):
    """A calibration or evaluation of an encoder version on a pair set, with its metrics."""

    __tablename__ = "eval_runs"
    __table_args__ = (CheckConstraint(_in("kind", EVAL_KINDS), name="kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    encoder_version_id: Mapped[int] = mapped_column(
        ForeignKey("encoder_versions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    pair_set_id: Mapped[int | None] = mapped_column(ForeignKey("pair_sets.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = _created()
