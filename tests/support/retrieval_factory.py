"""Factories for retrieval tests (and other areas' tests that need a populated catalog without an encoder)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from retrieval.catalog import get_or_create_dataset, register_encoder_version, store_embeddings
from retrieval.db import make_engine, migrate, session_factory
from retrieval.groups import slide_group
from retrieval.models import EncoderVersion, Image, Slide
from retrieval.store.edge import EdgeVectorStore


def clustered_vectors(labels: Sequence[str], dim: int = 16, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit vectors scattered around one random centre per label: (N, dim) float32."""
    rng = np.random.default_rng(seed)
    names = sorted(set(labels))
    centres = {lab: rng.normal(size=dim) for lab in names}
    vecs = np.stack(
        [centres[lab] / np.linalg.norm(centres[lab]) + spread * rng.normal(size=dim) / np.sqrt(dim) for lab in labels]
    )
    return (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)


def fake_version(
    session: Session, store: object, name: str = "fake-v1", dim: int = 16, activate: bool = True
) -> EncoderVersion:
    """Register an encoder version without a checkpoint (its encoder cannot embed files)."""
    return register_encoder_version(
        session=session,
        store=store,
        name=name,
        checkpoint_path="/nonexistent/fake.pt",  # type: ignore[arg-type]
        checkpoint_sha256=hashlib.sha256(name.encode()).hexdigest(),
        backbone="fake",
        representation="backbone",
        dim=dim,
        image_size=64,
        training_config={"fake": True},
        activate=activate,
    )


def add_images(
    session: Session,
    dataset: str,
    labels: Sequence[str | None],
    slides: Sequence[int | None] | None = None,
    prefix: str = "img",
    groups: Sequence[str | None] | None = None,
) -> list[Image]:
    """Insert ``len(labels)`` images (status pending) into ``dataset``; ``slides`` gives slide numbers (created).

    Each image's group is ``groups[i]`` when given, else its slide's (``slide:<id>``, as ingestion does).
    """
    ds = get_or_create_dataset(dataset, session=session)
    slide_ids: dict[int, int] = {}
    rows = []
    for i, lab in enumerate(labels):
        sid = None
        if slides is not None and slides[i] is not None:
            key = int(slides[i])  # type: ignore[arg-type]
            if key not in slide_ids:
                s = Slide(
                    dataset_id=ds.id,
                    path=f"/slides/{dataset}-{key}.svs",
                    content_hash=f"slide-{dataset}-{key}",
                    mpp_source="default",
                )
                session.add(s)
                session.flush()
                slide_ids[key] = s.id
            sid = slide_ids[key]
        rows.append(
            Image(
                dataset_id=ds.id,
                content_hash=f"{prefix}-{dataset}-{i}",
                source_path=f"/data/{prefix}{i}.png",
                slide_id=sid,
                level=0 if sid else None,
                x=i * 64 if sid else None,
                y=0 if sid else None,
                tile_size=64 if sid else None,
                width=64,
                height=64,
                label=lab,
                group=groups[i] if groups is not None else (slide_group(sid) if sid else None),
            )
        )
    session.add_all(rows)
    session.commit()
    return rows


@dataclass
class Catalog:
    session: Session
    store: EdgeVectorStore
    version: EncoderVersion
    url: str

    def close(self) -> None:
        self.session.close()
        self.store.close()


def make_catalog(url: str, store_root: Path, dim: int = 16) -> Catalog:
    """Migrate ``url``, open an embedded store under ``store_root`` and register an active fake version."""
    migrate(url)
    session = session_factory(make_engine(url))()
    store = EdgeVectorStore(store_root)
    version = fake_version(session, store, dim=dim)
    return Catalog(session, store, version, url)


def populate(
    cat: Catalog,
    labels: Sequence[str | None],
    slides: Sequence[int | None] | None = None,
    dataset: str = "ds",
    seed: int = 0,
    groups: Sequence[str | None] | None = None,
) -> tuple[list[Image], np.ndarray]:
    """Add images with clustered vectors and store them (optimised)."""
    rows = add_images(cat.session, dataset, labels, slides, groups=groups)
    vecs = clustered_vectors([lab or "none" for lab in labels], cat.version.dim, seed=seed)
    store_embeddings(rows, vecs, cat.version, session=cat.session, store=cat.store)
    cat.store.optimize(cat.version.collection)
    return rows, vecs
