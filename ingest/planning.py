"""The submitting side: enumerate sources, register slides and plan their tiles, split the work into batches.

Runs in the process that submits a job (CLI, dashboard). Slides are opened here to read their metadata and
compute the tissue mask on a thumbnail (well under a second per slide); workers then only read tile regions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ingest.errors import SlideError
from ingest.jobs import Failure
from ingest.paths import Roots
from ingest.payloads import BatchPayload, ImageItem, ImagesBatch, TilesBatch
from ingest.sources import SourceItem, enumerate_sources
from retrieval.groups import GroupRules, slide_group
from retrieval.models import Slide

if TYPE_CHECKING:
    from ingest.slides import TilePlan
    from training.pixels import DecodeBudget

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TilingOptions:
    """How slides are tiled (see :func:`ingest.slides.plan_tiles`)."""

    tile_size: int = 224
    target_mpp: float | None = None
    magnification: float | None = None
    mpp: float | None = None
    default_mpp: float = 0.5
    overlap: int = 0
    min_tissue: float = 0.5


@dataclass
class Plan:
    """Batches to run and failures found while planning; ``total`` counts every input item (tiles included)."""

    batches: list[BatchPayload]
    failures: list[Failure]
    total: int


def _chunks(seq: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(seq[i : i + size]) for i in range(0, len(seq), size)]


def _register_slide(session: Session, dataset_id: int, path: str, digest: str, plan: TilePlan) -> int:
    info = plan.info
    values = {
        "dataset_id": dataset_id,
        "path": path,
        "content_hash": digest,
        "format": info.format,
        "width": info.width,
        "height": info.height,
        "level_count": info.level_count,
        "mpp_x": info.mpp_x,
        "mpp_y": info.mpp_y,
        "magnification": info.magnification,
        "mpp_source": info.mpp_source,
        "tissue_fraction": plan.tissue_fraction,
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(Slide).values(values).on_conflict_do_nothing())
    session.commit()
    slide_id = session.scalar(select(Slide.id).where(Slide.dataset_id == dataset_id, Slide.content_hash == digest))
    assert slide_id is not None
    return int(slide_id)


def plan_slide(
    item: SourceItem,
    dataset_id: int,
    tiling: TilingOptions,
    batch_size: int,
    *,
    session: Session,
    group: str | None = None,
    budget: DecodeBudget | None = None,
) -> tuple[list[TilesBatch], int]:
    """Register one slide and return its tile batches and tile count (the tiles' group: ``group``, else the slide).

    Raises:
        SlideError: cannot open it (unsupported format, unreadable) or no tissue.
    """
    from ingest.slides import open_slide, plan_tiles, slide_fingerprint

    reader = open_slide(item.path, budget=budget)
    try:
        plan = plan_tiles(reader, item.path, **asdict(tiling))
    finally:
        reader.close()
    digest = slide_fingerprint(item.path)
    slide_id = _register_slide(session, dataset_id, item.path, digest, plan)
    extra: dict[str, Any] = dict(item.extra)
    if item.slide:
        extra["slide_name"] = item.slide
    extra.update({"mpp": round(plan.target_mpp, 4), "mpp_source": plan.info.mpp_source})
    tiles = [[t.level, t.x, t.y, t.size, t.tissue] for t in plan.tiles]
    logger.info("%s: %d tiles (%s mpp from %s)", item.path, len(tiles), plan.target_mpp, plan.info.mpp_source)
    batches = [
        TilesBatch(
            kind="tiles",
            slide_id=slide_id,
            slide_path=item.path,
            slide_hash=digest,
            dataset_id=dataset_id,
            out_size=plan.out_size,
            label=item.label,
            group=group or slide_group(slide_id),
            extra=extra,
            tiles=chunk,
        )
        for chunk in _chunks(tiles, batch_size)
    ]
    return batches, len(tiles)


def plan_ingest(
    paths: Sequence[str | Path],
    *,
    session: Session,
    dataset_id: int,
    resolve_dataset: Callable[[str], int],
    batch_size: int,
    labels_from_folders: bool = False,
    manifest: str | Path | None = None,
    tiling: TilingOptions | None = None,
    groups: GroupRules | None = None,
    roots: Roots | None = None,
    budget: DecodeBudget | None = None,
) -> Plan:
    """Enumerate the sources and split them into batches.

    Args:
        paths: folders and files.
        session: SQL session (slides are registered).
        dataset_id: the job's dataset.
        resolve_dataset: dataset name -> id (created if needed) for per-item datasets named in a manifest.
        batch_size: items (images or tiles) per batch message.
        labels_from_folders: label images by their folder name.
        manifest: optional manifest CSV.
        tiling: slide tiling options.
        groups: ``--groups CSV`` / ``--group-from REGEX`` rules (a manifest's group column wins over them).
        roots: allowed roots: every file must lie inside them; each batch carries them so workers check again
            before opening anything.
        budget: decode memory budget for slides read by the plain-image fallback reader.
    """
    tiling = tiling or TilingOptions()
    rules = groups or GroupRules()

    def group_of(item: SourceItem) -> str | None:
        return item.group or rules.group_of(item.path)

    found = enumerate_sources(paths, labels_from_folders=labels_from_folders, manifest=manifest, roots=roots)
    failures = [Failure(f.source, f.stage, f.reason) for f in found.failures]
    images = [i for i in found.items if i.kind == "image"]
    slides = [i for i in found.items if i.kind == "slide"]
    batches: list[BatchPayload] = []
    total = len(images) + len(found.failures)
    entries = [
        ImageItem(
            path=i.path,
            label=i.label,
            dataset_id=resolve_dataset(i.dataset) if i.dataset else None,
            group=group_of(i),
            extra=({**i.extra, "slide_name": i.slide} if i.slide else i.extra) or None,
        )
        for i in images
    ]
    batches += [ImagesBatch(kind="images", items=chunk) for chunk in _chunks(entries, batch_size)]
    for slide in slides:
        ds = resolve_dataset(slide.dataset) if slide.dataset else dataset_id
        try:
            slide_batches, count = plan_slide(
                slide, ds, tiling, batch_size, session=session, group=group_of(slide), budget=budget
            )
        except SlideError as exc:
            failures.append(Failure(exc.path, exc.stage, exc.reason))
            total += 1
            continue
        batches += slide_batches
        total += count
    if rules:
        ungrouped = sum(1 for i in images if group_of(i) is None)
        if ungrouped:
            logger.warning("%d of %d images got no group from --groups / --group-from", ungrouped, len(images))
    if roots:
        for batch in batches:
            batch["roots"] = roots.as_strings()
    return Plan(batches=batches, failures=failures, total=total)
