"""The batch pipeline: hash -> skip what is stored -> decode (threads) -> embed (chunks) -> store, for one batch.

Pure functions over an :class:`~ingest.context.IngestContext`; the Celery task and the embedded runner are thin
wrappers. A batch payload is JSON (paths / ids / slide regions, never pixels):

- ``{"kind": "images", "items": [{"path", "label", "dataset_id", "group", "extra"}, ...]}``
- ``{"kind": "tiles", "slide_id", "slide_path", "slide_hash", "dataset_id", "out_size", "label", "group", "extra",
  "tiles": [[level, x, y, size, tissue], ...]}``
- ``{"kind": "reembed", "image_ids": [...]}``

Any batch may carry ``"roots"``: the allowed roots its submitter enforced; every file is checked against them
(and against ``Settings.allowed_roots`` when configured) again here, before it is opened. Files are hashed in a
stream and decoded from the file later, inside the process's decode memory budget (:mod:`training.pixels`).

Decoding runs on the context's thread pool while the calling thread embeds earlier chunks, so the encoder is fed
as the files decode. Bad inputs become failures of the batch; transient errors (database, vector store) propagate
to the caller, which retries the whole batch (every step is idempotent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any, TypedDict

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ingest.context import IngestContext
from ingest.decode import file_hash, model_input
from ingest.errors import BadImageError, IngestError, PathNotAllowedError, SlideError, TransientError
from ingest.jobs import BatchOutcome, Failure
from ingest.paths import REFUSED, Roots, display_path
from ingest.payloads import BatchPayload, ImageItem
from retrieval.groups import slide_group
from retrieval.models import Embedding, EncoderVersion, Image, IngestJob

logger = logging.getLogger(__name__)

EMBED_CHUNK = 64


class NewImageRow(TypedDict):
    """The ``images`` columns a new file's row takes from its batch (the pipeline adds dataset, content hash,
    width, height and status when it inserts the row)."""

    source_path: str
    label: str | None
    group: str | None
    extra: dict[str, Any] | None
    job_id: int


class NewTileRow(NewImageRow):
    """The ``images`` columns a new slide tile's row takes from its batch: a file's, plus where it lies on the slide."""

    slide_id: int
    level: int
    x: int
    y: int
    tile_size: int


@dataclass
class Candidate:
    """One item of a batch after hashing: where it came from, its identity and how to get its model input.

    ``loader(preprocess)`` returns ``(preprocess(rgb), (width, height))``. ``values`` are the columns of the row to
    insert for a new file or tile; None for a stored image being re-embedded (``image_id`` names it).
    """

    source: str
    dataset_id: int
    content_hash: str
    loader: Callable[[Callable[[PILImage.Image], np.ndarray]], tuple[np.ndarray, tuple[int, int]]]
    values: NewImageRow | NewTileRow | None = None
    image_id: int | None = None


def _failure(exc: Exception, source: str, stage: str) -> Failure:
    if isinstance(exc, BadImageError | SlideError):
        return Failure(exc.path or source, exc.stage, exc.reason)
    return Failure(source, stage, f"{type(exc).__name__}: {exc}")


def _roots(ctx: IngestContext, payload: BatchPayload) -> list[Roots]:
    """The allowed roots a batch's files must lie in: its submitter's and this process's settings', if any."""
    found = []
    if submitted := payload.get("roots"):
        found.append(Roots(submitted))
    if ctx.settings.allowed_roots:
        found.append(Roots(ctx.settings.allowed_roots))
    return found


def _check_roots(path: str, roots: Sequence[Roots]) -> None:
    for r in roots:
        if not r.contains(path):
            raise PathNotAllowedError(f"{display_path(path)}: {REFUSED}")


def _hash_file(
    item: ImageItem, dataset_id: int, job_id: int, max_pixels: int, roots: Sequence[Roots], ctx: IngestContext
) -> Candidate | Failure:
    path = str(item["path"])
    try:
        _check_roots(path, roots)
    except PathNotAllowedError:
        return Failure(display_path(path), "read", REFUSED)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return Failure(display_path(path), "read", "file name is not valid UTF-8: rename the file")
    try:
        digest = file_hash(path)
    except BadImageError as exc:
        return _failure(exc, display_path(path), "read")
    values: NewImageRow = {
        "source_path": path,
        "label": item.get("label"),
        "group": item.get("group"),
        "extra": item.get("extra") or None,
        "job_id": job_id,
    }
    return Candidate(
        path,
        int(item.get("dataset_id") or dataset_id),
        digest,
        lambda preprocess: model_input(path, preprocess, max_pixels=max_pixels, budget=ctx.decode_budget),
        values,
    )


def _candidates(
    ctx: IngestContext, payload: BatchPayload, job: IngestJob, session: Session
) -> tuple[list[Candidate], list[Failure]]:
    """Turn a payload into candidates (hashing files on the thread pool) and failures."""
    from ingest.slides import cached_slide, read_region_rgb, tile_hash

    failures: list[Failure] = []
    out: list[Candidate] = []
    roots = _roots(ctx, payload)
    if payload["kind"] == "images":
        fn = partial(
            _hash_file,
            dataset_id=int(job.dataset_id or 0),
            job_id=job.id,
            max_pixels=ctx.settings.max_image_pixels,
            roots=roots,
            ctx=ctx,
        )
        for res in ctx.pool.map(fn, payload["items"]):
            (failures if isinstance(res, Failure) else out).append(res)  # type: ignore[arg-type]
    elif payload["kind"] == "tiles":
        path, out_size = str(payload["slide_path"]), int(payload["out_size"])
        try:
            _check_roots(path, roots)
        except PathNotAllowedError:
            failures += [Failure(f"{display_path(path)}@{t[0]}:{t[1]},{t[2]}+{t[3]}", "read", REFUSED)
                         for t in payload["tiles"]]  # fmt: skip
            return out, failures
        for level, x, y, size, tissue in payload["tiles"]:
            digest = tile_hash(payload["slide_hash"], level, x, y, size, out_size)

            def load(
                preprocess: Callable[[PILImage.Image], np.ndarray],
                level: int = level,
                x: int = x,
                y: int = y,
                size: int = size,
            ) -> tuple[np.ndarray, tuple[int, int]]:
                rgb = read_region_rgb(cached_slide(path), level, x, y, size, out_size)
                return preprocess(rgb), rgb.size

            values: NewTileRow = {
                "source_path": path,
                "slide_id": int(payload["slide_id"]),
                "level": level,
                "x": x,
                "y": y,
                "tile_size": size,
                "label": payload.get("label"),
                "group": payload.get("group") or slide_group(int(payload["slide_id"])),
                "extra": {**(payload.get("extra") or {}), "tissue": round(float(tissue), 4)},
                "job_id": job.id,
            }
            out.append(Candidate(f"{path}@{level}:{x},{y}+{size}", int(payload["dataset_id"]), digest, load, values))
    elif payload["kind"] == "reembed":
        from ingest.stored import image_model_input

        rows = session.scalars(select(Image).where(Image.id.in_(payload["image_ids"]))).all()
        for row in rows:
            out.append(
                Candidate(
                    row.source_path
                    if row.slide_id is None
                    else f"{row.source_path}@{row.level}:{row.x},{row.y}+{row.tile_size}",
                    row.dataset_id,
                    row.content_hash,
                    partial(image_model_input, row, settings=ctx.settings, budget=ctx.decode_budget),
                    image_id=row.id,
                )
            )
        missing = set(payload["image_ids"]) - {r.id for r in rows}
        failures += [Failure(f"image {i}", "read", "image row was deleted before re-embedding") for i in missing]
    else:
        raise IngestError(f"unknown batch kind {payload.get('kind')!r}")
    return out, failures


def _existing(session: Session, cands: Sequence[Candidate], version: EncoderVersion) -> dict[tuple[int, str], Image]:
    """Stored image rows of the candidates, keyed by (dataset_id, content_hash)."""
    keys = list({(c.dataset_id, c.content_hash) for c in cands})
    rows: dict[tuple[int, str], Image] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found = session.scalars(select(Image).where(tuple_(Image.dataset_id, Image.content_hash).in_(chunk))).all()
        rows.update({(r.dataset_id, r.content_hash): r for r in found})
    return rows


def _embedded_ids(session: Session, image_ids: Sequence[int], version: EncoderVersion) -> set[int]:
    if not image_ids:
        return set()
    return set(
        session.scalars(
            select(Embedding.image_id).where(
                Embedding.encoder_version_id == version.id, Embedding.image_id.in_(list(image_ids))
            )
        ).all()
    )


def _decode(
    cand: Candidate, preprocess: Callable[[PILImage.Image], np.ndarray]
) -> tuple[np.ndarray, tuple[int, int]] | Failure:
    try:
        array, (width, height) = cand.loader(preprocess)
        return array, (int(width), int(height))
    except (BadImageError, SlideError) as exc:
        return _failure(exc, cand.source, exc.stage)
    except (OSError, ValueError) as exc:
        return _failure(exc, cand.source, "tile" if "@" in cand.source else "decode")


def _chunks(it: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(islice(it, size)):
        yield chunk


def _insert_rows(session: Session, cands: Sequence[Candidate], sizes: Sequence[tuple[int, int]]) -> None:
    """Insert image rows, ignoring ones that exist (unique content hash / tile geometry): safe under races."""
    if not cands:
        return
    new: list[dict[str, Any]] = []
    for c, (w, h) in zip(cands, sizes, strict=True):
        if c.values is None:
            raise IngestError(f"{c.source}: a stored image (re-embedding) has no new row to insert")
        new.append({"dataset_id": c.dataset_id, "content_hash": c.content_hash, "status": "pending", "width": w,
                    "height": h, **c.values})  # fmt: skip
    keys = set().union(*new)  # executemany needs one key set (a batch is one kind, so this is a safeguard)
    values = [{k: v.get(k) for k in keys} for v in new]
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    # executemany of one compiled statement: a multi-row VALUES clause would be compiled afresh for every batch
    # (~0.4 ms per row in SQLAlchemy's compiler, measured), more than the insert itself
    session.connection().execute(insert(Image).on_conflict_do_nothing(), values)
    session.commit()


def run_batch(ctx: IngestContext, job_id: int, payload: BatchPayload) -> BatchOutcome:
    """Process one batch: store every new valid item once, report skips and per-item failures.

    Raises:
        TransientError / sqlalchemy.exc.OperationalError / ...: a service is down; retry the batch.
    """
    outcome = BatchOutcome()
    with ctx.sessions() as session:
        job = session.get(IngestJob, job_id)
        if job is None:
            raise IngestError(f"job {job_id} does not exist")
        version = session.get(EncoderVersion, job.encoder_version_id)
        if version is None:
            raise IngestError(f"job {job_id}: its encoder version was deleted")
        encoder = ctx.encoder(version)
        t0 = time.perf_counter()
        cands, failures = _candidates(ctx, payload, job, session)
        outcome.failures += failures
        # 1. skip what this encoder version already stored (and duplicates inside the batch)
        existing = _existing(session, cands, version)
        embedded = _embedded_ids(session, [r.id for r in existing.values()], version)
        todo: list[Candidate] = []
        seen: set[tuple[int, str]] = set()
        for c in cands:
            key = (c.dataset_id, c.content_hash)
            row = existing.get(key)
            if key in seen:
                outcome.skipped += 1
            elif row is not None and row.id in embedded:
                own = row.job_id == job_id and (c.values is None or row.source_path == c.values["source_path"])
                if own and payload["kind"] != "reembed":
                    outcome.done += 1  # stored by an earlier delivery of this very batch
                else:
                    outcome.skipped += 1
            else:
                todo.append(c)
            seen.add(key)
        t1 = time.perf_counter()
        # 2. decode on the pool (queued now, so it runs while another batch of this process still embeds) while
        #    this thread embeds chunk by chunk, one batch at a time on the encoder
        ok: list[Candidate] = []
        sizes: list[tuple[int, int]] = []
        vectors: list[np.ndarray] = []
        decoded = ctx.pool.map(partial(_decode, preprocess=encoder.preprocess), todo)
        with ctx.embed_lock:
            t1w = time.perf_counter()
            for chunk in _chunks(zip(todo, decoded, strict=True), EMBED_CHUNK):
                arrays = []
                for cand, res in chunk:
                    if isinstance(res, Failure):
                        outcome.failures.append(res)
                    else:
                        ok.append(cand)
                        arrays.append(res[0])
                        sizes.append(res[1])
                if arrays:
                    vectors.append(encoder.embed_uint8(np.stack(arrays)))
            t2 = time.perf_counter()
        if not ok:
            return outcome
        # 3. rows (pending) then points + embeddings + done, in the store's order; one batch at a time, so the next
        #    batch of this process embeds meanwhile
        with ctx.commit_lock:
            t2w = time.perf_counter()
            if payload["kind"] != "reembed":
                _insert_rows(session, ok, sizes)
            rows_by_key = _existing(session, ok, version)
            rows = [rows_by_key[(c.dataset_id, c.content_hash)] for c in ok]
            matrix = np.concatenate(vectors, axis=0)
            _store(ctx, session, rows, matrix, version)
            t3 = time.perf_counter()
        logger.info(
            "job %d: %d embedded in %.2fs (hash + skip check %.2fs, decode + embed %.2fs, rows + store %.2fs; "
            "waited %.2fs for the encoder, %.2fs to commit)",
            job_id, len(ok), t3 - t0, t1 - t0, t2 - t1w, t3 - t2w, t1w - t1, t2w - t2,
        )  # fmt: skip
        for c, row in zip(ok, rows, strict=True):
            own = c.values is None or (row.job_id == job_id and row.source_path == c.values["source_path"])
            if own:
                outcome.done += 1
            else:
                outcome.skipped += 1  # another file with the same content got there first
    return outcome


def _store(
    ctx: IngestContext, session: Session, rows: Sequence[Image], matrix: np.ndarray, version: EncoderVersion
) -> None:
    from retrieval.catalog import store_embeddings
    from retrieval.errors import StoreBusyError

    try:
        with ctx.store() as store:
            store_embeddings(rows, matrix, version, session=session, store=store)
    except TransientError:
        session.rollback()
        raise
    except StoreBusyError as exc:
        # another process (dashboard, CLI) holds the embedded store: temporary, the batch is retried with back-off
        session.rollback()
        raise TransientError(str(exc)) from exc
    except IntegrityError as exc:
        # Another worker stored the same image at the same moment: retry, the re-run sees it stored.
        session.rollback()
        raise TransientError(f"concurrent write of the same images: {exc.orig}") from exc
    except Exception as exc:
        session.rollback()
        if "WouldBlock" in str(exc):
            raise TransientError(f"vector store busy: {exc}") from exc
        raise
