"""The write path: datasets, encoder versions and stored embeddings (SQL rows + Qdrant points kept in step).

All functions take ``session`` (and ``store``) keyword-only; they commit their own work.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from retrieval.errors import NoActiveEncoderError, RetrievalError, VectorStoreError
from retrieval.ids import point_id
from retrieval.jsonable import json_safe
from retrieval.models import Dataset, Embedding, EncoderVersion, Image, utcnow
from retrieval.store.base import VectorStore, as_matrix

log = logging.getLogger(__name__)

#: Alias that always names the active encoder version's collection.
ACTIVE_ALIAS = "hq_active"


def collection_name(version_name: str) -> str:
    """Qdrant collection name for an encoder version name."""
    return "hq_" + re.sub(r"[^A-Za-z0-9_.\-]", "_", version_name)[:190]


def get_or_create_dataset(name: str, *, session: Session) -> Dataset:
    """Return the dataset called ``name``, creating it if needed (safe under concurrent callers).

    Raises:
        RetrievalError: an empty or too long name (:func:`retrieval.names.check_dataset_name`).
    """
    from retrieval.names import check_dataset_name

    name = check_dataset_name(name)
    found = session.scalar(select(Dataset).where(Dataset.name == name))
    if found is not None:
        return found
    try:
        with session.begin_nested():
            dataset = Dataset(name=name)
            session.add(dataset)
        session.commit()
        return dataset
    except IntegrityError:
        session.rollback()
        found = session.scalar(select(Dataset).where(Dataset.name == name))
        if found is None:
            raise
        return found


def register_encoder_version(
    *,
    session: Session,
    store: VectorStore,
    name: str,
    checkpoint_path: str,
    checkpoint_sha256: str,
    backbone: str,
    representation: str,
    dim: int,
    image_size: int,
    training_config: dict[str, Any] | None = None,
    activate: bool = False,
) -> EncoderVersion:
    """Register an encoder version from its metadata (no checkpoint loading) and create its collection.

    Idempotent: a version with the same name and checkpoint hash is returned as it is (activated if asked).

    Raises:
        RetrievalError: The name is not allowed (:func:`retrieval.names.check_version_name`), or it is taken by a
            different checkpoint.
    """
    from retrieval.names import check_version_name

    check_version_name(name)
    version = session.scalar(select(EncoderVersion).where(EncoderVersion.name == name))
    if version is not None and version.checkpoint_sha256 != checkpoint_sha256:
        raise RetrievalError(
            f"encoder version name {name!r} is already registered for another checkpoint "
            f"(sha256 {version.checkpoint_sha256[:12]}...): pass a different --name"
        )
    if version is None:
        version = EncoderVersion(
            name=name,
            checkpoint_path=checkpoint_path,
            checkpoint_sha256=checkpoint_sha256,
            backbone=backbone,
            representation=representation,
            dim=dim,
            image_size=image_size,
            training_config=training_config,
            is_active=False,
            collection=collection_name(name),
        )
        session.add(version)
        session.flush()
        log.info("registered encoder version %s (%s, %d-d)", name, backbone, dim)
    store.ensure_collection(version.collection, version.dim)
    if activate:
        activate_encoder(version, session=session, store=store)
    session.commit()
    return version


def register_encoder(
    checkpoint: Path, *, session: Session, store: VectorStore, name: str | None = None, activate: bool = False
) -> EncoderVersion:
    """Register a training checkpoint as an encoder version (loads it on CPU to read dim/backbone/config).

    Args:
        checkpoint: Path of a checkpoint written by ``histoquery train``.
        session: SQL session.
        store: Vector store; the version's collection is created in it.
        name: Version name; default ``<backbone>-<representation>-<sha256[:12]>``.
        activate: Make it the active version (queries and ingestion use it).

    Returns:
        The (new or existing) :class:`EncoderVersion`.
    """
    from retrieval.names import check_version_name
    from training.encoder import Encoder  # heavy import (torch), only here

    if name is not None:
        check_version_name(name)  # before the checkpoint is loaded or anything is written
    path = Path(checkpoint).expanduser().resolve()
    if not path.is_file():
        raise RetrievalError(f"checkpoint {path} does not exist: train one with `histoquery train` first")
    existing = session.scalars(select(EncoderVersion)).all()
    encoder = Encoder.from_checkpoint(path, device="cpu")
    sha = encoder.checkpoint_sha256
    if name is None:
        same = [v for v in existing if v.checkpoint_sha256 == sha]
        if same:
            version = same[0]
            store.ensure_collection(version.collection, version.dim)
            if activate:
                activate_encoder(version, session=session, store=store)
                session.commit()
            return version
        name = f"{encoder.backbone}-{encoder.representation}-{sha[:12]}"
    return register_encoder_version(
        session=session,
        store=store,
        name=name,
        checkpoint_path=str(path),
        checkpoint_sha256=sha,
        backbone=encoder.backbone,
        representation=encoder.representation,
        dim=int(encoder.dim),
        image_size=int(encoder.image_size),
        training_config=json_safe(encoder.config),
        activate=activate,
    )


def activate_encoder(version: EncoderVersion, *, session: Session, store: VectorStore) -> None:
    """Make ``version`` the only active encoder and point the ``hq_active`` alias at its collection."""
    store.ensure_collection(version.collection, version.dim)
    session.execute(update(EncoderVersion).where(EncoderVersion.id != version.id).values(is_active=False))
    version.is_active = True
    session.flush()
    store.set_alias(ACTIVE_ALIAS, version.collection)
    session.commit()


def active_encoder_version(*, session: Session, name: str | None = None) -> EncoderVersion:
    """The active encoder version (or the one called ``name``).

    Raises:
        NoActiveEncoderError: None is registered/active, or ``name`` is unknown; the message says how to fix it.
    """
    if name:
        version = session.scalar(select(EncoderVersion).where(EncoderVersion.name == name))
        if version is None:
            known = ", ".join(session.scalars(select(EncoderVersion.name)).all()) or "none"
            raise NoActiveEncoderError(f"no encoder version named {name!r} (registered: {known})")
        return version
    version = session.scalar(select(EncoderVersion).where(EncoderVersion.is_active.is_(True)))
    if version is None:
        raise NoActiveEncoderError(
            "no active encoder version: register a checkpoint with `histoquery reembed --checkpoint CKPT --activate` "
            "(or retrieval.catalog.register_encoder(..., activate=True))"
        )
    return version


def point_payload(image: Image, dataset_name: str) -> dict[str, Any]:
    """The Qdrant payload of an image's point: filter fields plus what a top-k answer shows (so it needs no SQL)."""
    return {
        "image_id": int(image.id),
        "dataset": dataset_name,
        "dataset_id": int(image.dataset_id),
        "label": image.label,
        "slide_id": image.slide_id,
        "group": image.group,
        "content_hash": image.content_hash,
        "source_path": image.source_path,
        "level": image.level,
        "x": image.x,
        "y": image.y,
        "tile_size": image.tile_size,
    }


def store_embeddings(
    rows: Sequence[Image], vectors: np.ndarray, version: EncoderVersion, *, session: Session, store: VectorStore
) -> None:
    """Store the vectors of ``rows`` under ``version``: points first, then SQL rows, in one transaction.

    Upserts the Qdrant points (payload: image_id, dataset, dataset_id, label, slide_id, group, content_hash and, so that
    top-k answers need no SQL, source_path, level, x, y, tile_size), then inserts
    the missing :class:`Embedding` rows and marks the images ``done``. Idempotent: re-running changes nothing.
    If the SQL commit fails the points stay (same deterministic ids; ``histoquery doctor --repair`` cleans up).

    Args:
        rows: Persisted images (with ids), in the order of ``vectors``.
        vectors: (N, D) float32, L2-normalised, D = ``version.dim``.
        version: The encoder version that produced the vectors.

    Raises:
        VectorStoreError: Shape mismatch or a store failure (nothing is written to SQL then).
    """
    if len(rows) == 0:
        return
    try:
        arr = as_matrix(vectors, version.dim)
    except ValueError as exc:
        raise VectorStoreError(f"cannot store embeddings for encoder {version.name!r}: {exc}") from exc
    if len(arr) != len(rows):
        raise VectorStoreError(f"store_embeddings got {len(rows)} images but {len(arr)} vectors")
    if any(r.id is None for r in rows):
        session.flush()
    dataset_ids = {r.dataset_id for r in rows}
    names = dict(session.execute(select(Dataset.id, Dataset.name).where(Dataset.id.in_(dataset_ids))).all())
    ids = [point_id(r.content_hash, version.name, r.dataset_id) for r in rows]
    payloads = [point_payload(r, names.get(r.dataset_id, "")) for r in rows]
    store.upsert(version.collection, ids, arr, payloads)
    image_ids = [int(r.id) for r in rows]
    have = set(
        session.scalars(
            select(Embedding.image_id).where(
                Embedding.encoder_version_id == version.id, Embedding.image_id.in_(image_ids)
            )
        ).all()
    )
    # set-based statements, not one ORM object per row: a batch of hundreds costs milliseconds, not a flush each
    now = utcnow()
    missing: dict[int, str] = {}
    for row, pid in zip(rows, ids, strict=True):
        if row.id not in have:
            missing.setdefault(int(row.id), pid)
    if missing:
        session.execute(
            insert(Embedding),
            [
                {"image_id": iid, "encoder_version_id": version.id, "point_id": pid, "created_at": now}
                for iid, pid in missing.items()
            ],
        )
    stale = sorted({int(r.id) for r in rows if r.status != "done" or r.error is not None})
    if stale:  # ORM-enabled UPDATE: the session's Image objects see the new status too
        session.execute(update(Image).where(Image.id.in_(stale)).values(status="done", error=None))
    session.commit()


def training_log(checkpoint_path: str | Path) -> list[dict[str, Any]] | None:
    """The training curves of an encoder version (its checkpoint's ``metrics.csv``, read by
    :func:`training.runlog.read_metrics`), or None when the checkpoint has no log next to it."""
    from training.runlog import read_metrics

    return read_metrics(checkpoint_path)
