"""Read-only lookups the pages display (names, counts, image metadata), as plain picklable records.

No business logic: these are the SELECTs behind drop-downs and captions. Queries, evaluation and ingestion go
through ``retrieval`` and ``ingest``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from retrieval.models import (
    Dataset,
    Embedding,
    EncoderVersion,
    EvalRun,
    Image,
    IngestFailure,
    IngestJob,
    LabeledPair,
    PairSet,
    Slide,
)


@dataclass(frozen=True)
class ImageInfo:
    """What a gallery card shows about a stored image."""

    id: int
    dataset: str
    label: str | None
    source_path: str
    slide_id: int | None
    slide_path: str | None
    level: int | None
    x: int | None
    y: int | None
    tile_size: int | None
    slide_width: int | None
    slide_height: int | None

    @property
    def is_tile(self) -> bool:
        return self.slide_id is not None and self.x is not None and self.y is not None

    @property
    def slide_name(self) -> str:
        return self.slide_path.rsplit("/", 1)[-1] if self.slide_path else "-"

    @property
    def name(self) -> str:
        if self.is_tile:
            return f"{self.slide_name} @ ({self.x}, {self.y})"
        return self.source_path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class VersionInfo:
    """An encoder version as the Models / Accuracy pages show it."""

    id: int
    name: str
    backbone: str
    representation: str
    dim: int
    image_size: int
    threshold_cos: float | None
    is_active: bool
    collection: str
    checkpoint_path: str
    checkpoint_sha256: str
    created_at: str
    training_config: dict[str, Any] | None
    calibration: dict[str, Any] | None
    stored: int


def image_infos(ids: Iterable[int], *, session: Session) -> dict[int, ImageInfo]:
    """Metadata of the given image ids (unknown ids are absent from the result)."""
    wanted = sorted({int(i) for i in ids})
    out: dict[int, ImageInfo] = {}
    for start in range(0, len(wanted), 900):  # stay under SQLite's bound-parameter limit
        rows = session.execute(
            select(Image, Dataset.name, Slide)
            .join(Dataset, Dataset.id == Image.dataset_id)
            .outerjoin(Slide, Slide.id == Image.slide_id)
            .where(Image.id.in_(wanted[start : start + 900]))
        ).all()
        for img, dataset, slide in rows:
            out[img.id] = ImageInfo(
                id=img.id,
                dataset=dataset,
                label=img.label,
                source_path=img.source_path,
                slide_id=img.slide_id,
                slide_path=slide.path if slide else None,
                level=img.level,
                x=img.x,
                y=img.y,
                tile_size=img.tile_size,
                slide_width=slide.width if slide else None,
                slide_height=slide.height if slide else None,
            )
    return out


def dataset_names(*, session: Session) -> list[str]:
    return list(session.scalars(select(Dataset.name).order_by(Dataset.name)))


def label_names(*, session: Session) -> list[str]:
    return list(session.scalars(select(Image.label).where(Image.label.is_not(None)).distinct().order_by(Image.label)))


def slide_choices(*, session: Session) -> dict[int, str]:
    """Slide id -> file name."""
    return {sid: path.rsplit("/", 1)[-1] for sid, path in session.execute(select(Slide.id, Slide.path))}


def stored_image_ids(version_id: int, limit: int = 500, *, session: Session) -> list[int]:
    """The first ``limit`` image ids that have a vector for the encoder version (for the image picker)."""
    q = (
        select(Embedding.image_id)
        .where(Embedding.encoder_version_id == version_id)
        .order_by(Embedding.image_id)
        .limit(limit)
    )
    return list(session.scalars(q))


def stored_counts(*, session: Session) -> dict[int, int]:
    """Stored vectors per encoder version id (versions without any are absent). Counts every embedding row: O(N),
    57 ms at 1M on SQLite, so the per-rerun page preamble caches it (``dashboard.queries.versions``)."""
    rows = session.execute(select(Embedding.encoder_version_id, func.count()).group_by(Embedding.encoder_version_id))
    return {int(vid): int(n) for vid, n in rows.all()}


def stored_stamp(*, session: Session) -> tuple[int, ...]:
    """A cheap marker that changes when vectors are stored: the newest encoder version id, the largest image id with
    a vector (one step down the primary-key index), and the number of jobs and images they have handled (ingestion
    and re-embedding count every stored batch; the job table is small). O(log N), whatever the number of vectors.

    Writes that move none of these (rows removed by ``histoquery doctor --repair``; vectors stored for images that
    already had one under another version, outside a job) are not seen here: the cache keyed by it expires anyway.
    """
    newest_version = session.scalar(select(func.max(EncoderVersion.id)))
    newest_image = session.scalar(select(func.max(Embedding.image_id)))
    n_jobs, handled = session.execute(
        select(func.count(IngestJob.id), func.sum(IngestJob.done + IngestJob.failed + IngestJob.skipped))
    ).one()
    return int(newest_version or 0), int(newest_image or 0), int(n_jobs or 0), int(handled or 0)


def versions(*, session: Session, counts: dict[int, int] | None = None) -> list[VersionInfo]:
    """Every registered encoder version, newest first, with its number of stored vectors.

    Args:
        counts: stored vectors per version id (:func:`stored_counts`, perhaps cached); None counts them now.
    """
    if counts is None:
        counts = stored_counts(session=session)
    out = []
    for v in session.scalars(select(EncoderVersion).order_by(EncoderVersion.id.desc())):
        out.append(
            VersionInfo(
                id=v.id,
                name=v.name,
                backbone=v.backbone,
                representation=v.representation,
                dim=v.dim,
                image_size=v.image_size,
                threshold_cos=v.threshold_cos,
                is_active=v.is_active,
                collection=v.collection,
                checkpoint_path=v.checkpoint_path,
                checkpoint_sha256=v.checkpoint_sha256,
                created_at=v.created_at.strftime("%Y-%m-%d %H:%M"),
                training_config=v.training_config,
                calibration=v.calibration,
                stored=int(counts.get(v.id, 0)),
            )
        )
    return out


def active_version(*, session: Session, counts: dict[int, int] | None = None) -> VersionInfo | None:
    """The active encoder version, or None when none is registered/active (``counts``: as :func:`versions`)."""
    return next((v for v in versions(session=session, counts=counts) if v.is_active), None)


def eval_runs(version_id: int, *, session: Session) -> list[dict[str, Any]]:
    """Calibration / evaluation runs of an encoder version, newest first."""
    rows = session.execute(
        select(EvalRun, PairSet.name)
        .outerjoin(PairSet, PairSet.id == EvalRun.pair_set_id)
        .where(EvalRun.encoder_version_id == version_id)
        .order_by(EvalRun.id.desc())
    ).all()
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "pair_set": name,
            "created_at": r.created_at.strftime("%Y-%m-%d %H:%M"),
            "metrics": r.metrics,
        }
        for r, name in rows
    ]


def pair_sets(*, session: Session) -> dict[str, int]:
    """Pair set name -> number of labeled pairs."""
    rows = session.execute(
        select(PairSet.name, func.count(LabeledPair.id))
        .outerjoin(LabeledPair, LabeledPair.pair_set_id == PairSet.id)
        .group_by(PairSet.name)
        .order_by(PairSet.name)
    ).all()
    return {name: int(n) for name, n in rows}


@dataclass(frozen=True)
class JobRow:
    """An ingestion / re-embedding job as the Ingestion page lists it."""

    id: int
    kind: str
    status: str
    dataset: str | None
    sources: list[Any]
    total: int
    done: int
    failed: int
    skipped: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None

    @property
    def request(self) -> dict[str, Any]:
        """What the job was asked to do (the first JSON object of ``sources``; ``ingest.jobs``)."""
        first = self.sources[0] if self.sources else {}
        return first if isinstance(first, dict) else {}

    @property
    def description(self) -> str:
        """The job's inputs in words: files / folders, a manifest, or the encoder a re-embedding uses."""
        req = self.request
        if self.kind == "reembed" or "encoder" in req:
            return f"re-embed with {req.get('encoder', '?')}" + (" (then activate)" if req.get("activate") else "")
        parts = [str(p) for p in req.get("inputs") or []]
        if req.get("manifest"):
            parts.append(f"manifest {req['manifest']}")
        return ", ".join(parts) or "-"

    @property
    def options(self) -> str:
        """The ingestion options that shape what is stored (labels, groups, slide tiling), in words."""
        req = self.request
        out = []
        if req.get("labels_from_folders"):
            out.append("labels from folders")
        if req.get("group_from"):
            out.append(f"groups from /{req['group_from']}/")
        if req.get("groups_csv"):
            out.append(f"groups from {req['groups_csv']}")
        tiling = req.get("tiling") or {}
        if tiling:
            res = (
                f"{tiling['target_mpp']} mpp"
                if tiling.get("target_mpp")
                else f"{tiling['magnification']}x"
                if tiling.get("magnification")
                else "native resolution"
            )
            out.append(
                f"slide tiles {tiling.get('tile_size')} px at {res}, overlap {tiling.get('overlap', 0)} px, "
                f"tissue ≥ {tiling.get('min_tissue')}"
            )
        return "; ".join(out)

    @property
    def progress(self) -> float:
        """Fraction of sources handled (done + failed + skipped) of total; 0 when unknown."""
        if self.total <= 0:
            return 1.0 if self.status == "done" else 0.0
        return min(1.0, (self.done + self.failed + self.skipped) / self.total)


def _ts(value: Any) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else None


def jobs(limit: int = 50, *, session: Session) -> list[JobRow]:
    """The newest ``limit`` jobs, newest first."""
    from ingest.jobs import effective_status

    rows = session.execute(
        select(IngestJob, Dataset.name)
        .outerjoin(Dataset, Dataset.id == IngestJob.dataset_id)
        .order_by(IngestJob.id.desc())
        .limit(limit)
    ).all()
    return [
        JobRow(
            id=j.id,
            kind=j.kind,
            status=effective_status(j),  # 'interrupted' when the process running it is gone
            dataset=name,
            sources=list(j.sources or []),
            total=j.total,
            done=j.done,
            failed=j.failed,
            skipped=j.skipped,
            created_at=_ts(j.created_at) or "",
            started_at=_ts(j.started_at),
            finished_at=_ts(j.finished_at),
            error=j.error,
        )
        for j, name in rows
    ]


def job_failures(job_id: int, limit: int = 1000, *, session: Session) -> list[dict[str, str]]:
    """Failed sources of a job with stage and reason."""
    rows = session.scalars(
        select(IngestFailure).where(IngestFailure.job_id == job_id).order_by(IngestFailure.id).limit(limit)
    )
    return [{"file": f.source_path, "stage": f.stage, "reason": f.reason} for f in rows]


def labeled_datasets(*, session: Session) -> list[str]:
    """Datasets with at least 4 labeled images (pairs can be generated from their labels)."""
    rows = session.execute(
        select(Dataset.name)
        .join(Image, Image.dataset_id == Dataset.id)
        .where(Image.label.is_not(None))
        .group_by(Dataset.name)
        .having(func.count(Image.id) >= 4)
        .order_by(Dataset.name)
    ).all()
    return [r[0] for r in rows]


def done_image_count(*, session: Session) -> int:
    """Images stored successfully (what a re-embedding embeds)."""
    return int(session.scalar(select(func.count()).select_from(Image).where(Image.status == "done")) or 0)
