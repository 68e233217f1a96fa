"""Read back what an ingestion stored: SQL rows, embeddings, Qdrant points (for ingest tests)."""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from retrieval.settings import Settings


@dataclass
class Stored:
    images: int
    done: int
    embeddings: int
    points: int
    distinct_hashes: int
    vectors: dict[str, np.ndarray]  # content_hash -> vector
    rows: dict[str, tuple[str, str | None]]  # content_hash -> (source_path, label)
    drift_free: bool  # retrieval.doctor.check: no missing / orphan point for any encoder version


def stored(settings: Settings, dataset: str | None = None, with_vectors: bool = False) -> Stored:
    """Counts (optionally for one dataset) and, if asked, every stored vector by content hash."""
    from retrieval.catalog import active_encoder_version
    from retrieval.db import make_engine, session_factory
    from retrieval.doctor import check
    from retrieval.ids import point_id
    from retrieval.models import Dataset, Embedding, Image
    from retrieval.store import open_vector_store

    engine = make_engine(settings.db_url)
    lock = _writer_lock(settings)
    store = open_vector_store(settings)
    try:
        with session_factory(engine)() as session:
            version = active_encoder_version(session=session)
            q = select(Image)
            if dataset is not None:
                q = q.join(Dataset, Dataset.id == Image.dataset_id).where(Dataset.name == dataset)
            images = session.scalars(q).all()
            ids = [i.id for i in images]
            embeddings = session.scalar(
                select(func.count()).select_from(Embedding).where(
                    Embedding.encoder_version_id == version.id, Embedding.image_id.in_(ids)
                )
            ) or 0  # fmt: skip
            points = store.count(version.collection)
            vectors: dict[str, np.ndarray] = {}
            if with_vectors and images:
                pids = [point_id(i.content_hash, version.name, i.dataset_id) for i in images]
                found = store.retrieve_existing(version.collection, pids)
                vectors = {i.content_hash: found[p] for i, p in zip(images, pids, strict=True) if p in found}
            return Stored(
                images=len(images),
                done=sum(1 for i in images if i.status == "done"),
                embeddings=int(embeddings),
                points=points,
                distinct_hashes=len({i.content_hash for i in images}),
                vectors=vectors,
                rows={i.content_hash: (i.source_path, i.label) for i in images},
                drift_free=all(r.ok for r in check(session=session, store=store)),
            )
    finally:
        store.close()
        engine.dispose()
        if lock is not None:
            lock.close()


def _writer_lock(settings: Settings) -> Any:
    """Hold the embedded store's writer lock (the one ingest workers take) while reading it."""
    if settings.vector_backend != "edge" or settings.qdrant_path is None:
        return None
    path = Path(settings.qdrant_path) / ".histoquery-writer.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a")
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh
