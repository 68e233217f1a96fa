"""The write path on SQLite and PostgreSQL with the embedded store: idempotent storage, datasets, encoders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from retrieval.catalog import (
    ACTIVE_ALIAS,
    active_encoder_version,
    get_or_create_dataset,
    register_encoder,
    register_encoder_version,
    store_embeddings,
)
from retrieval.errors import NoActiveEncoderError, RetrievalError, VectorStoreError
from retrieval.ids import point_id
from retrieval.models import Embedding, Image
from tests.support.retrieval_factory import Catalog, add_images, clustered_vectors, fake_version


def test_point_ids_are_deterministic() -> None:
    assert point_id("abc", "v1") == point_id("abc", "v1")
    assert point_id("abc", "v1") != point_id("abc", "v2") != point_id("abd", "v1")


def test_store_embeddings_is_idempotent(any_catalog: Catalog) -> None:
    cat = any_catalog
    rows = add_images(cat.session, "ds", ["A", "B", "A"])
    vecs = clustered_vectors(["A", "B", "A"], cat.version.dim)
    store_embeddings(rows, vecs, cat.version, session=cat.session, store=cat.store)
    store_embeddings(rows, vecs, cat.version, session=cat.session, store=cat.store)  # same images again
    store_embeddings(rows[:1], vecs[:1], cat.version, session=cat.session, store=cat.store)
    assert cat.store.count(cat.version.collection) == 3
    assert cat.session.scalar(select(func.count()).select_from(Embedding)) == 3
    assert {r.status for r in cat.session.scalars(select(Image))} == {"done"}
    hit = cat.store.search(cat.version.collection, vecs[1], 1)[0]
    assert hit.id == point_id(rows[1].content_hash, cat.version.name, rows[1].dataset_id)
    assert hit.payload == {
        "image_id": rows[1].id,
        "dataset": "ds",
        "dataset_id": rows[1].dataset_id,
        "label": "B",
        "slide_id": None,
        "group": None,
        "content_hash": rows[1].content_hash,
        "source_path": rows[1].source_path,
        "level": None,
        "x": None,
        "y": None,
        "tile_size": None,
    }


def test_unique_constraints_make_reingest_a_noop(any_catalog: Catalog) -> None:
    cat = any_catalog
    add_images(cat.session, "ds", ["A"], slides=[1])
    with pytest.raises(IntegrityError):
        add_images(cat.session, "ds", ["A"], slides=[1])  # same content hash in the same dataset
    cat.session.rollback()
    assert get_or_create_dataset("ds", session=cat.session).id == get_or_create_dataset("ds", session=cat.session).id


def test_store_embeddings_rejects_wrong_shapes(catalog: Catalog) -> None:
    rows = add_images(catalog.session, "ds", ["A", "B"])
    with pytest.raises(VectorStoreError, match="dimension"):
        store_embeddings(
            rows, np.zeros((2, 3), np.float32), catalog.version, session=catalog.session, store=catalog.store
        )
    with pytest.raises(VectorStoreError, match="2 images but 1 vectors"):
        store_embeddings(
            rows, clustered_vectors(["A"], 16), catalog.version, session=catalog.session, store=catalog.store
        )
    assert catalog.store.count(catalog.version.collection) == 0


def test_active_version_and_alias(catalog: Catalog) -> None:
    assert active_encoder_version(session=catalog.session).name == "fake-v1"
    v2 = fake_version(catalog.session, catalog.store, name="fake-v2", dim=8, activate=True)
    assert active_encoder_version(session=catalog.session).id == v2.id
    assert catalog.store.resolve(ACTIVE_ALIAS) == v2.collection
    assert active_encoder_version(session=catalog.session, name="fake-v1").name == "fake-v1"
    with pytest.raises(NoActiveEncoderError, match="fake-v1, fake-v2"):
        active_encoder_version(session=catalog.session, name="nope")
    with pytest.raises(RetrievalError, match="another checkpoint"):
        register_encoder_version(
            session=catalog.session,
            store=catalog.store,
            name="fake-v2",
            checkpoint_path="x",
            checkpoint_sha256="0" * 64,
            backbone="b",
            representation="backbone",
            dim=8,
            image_size=64,
        )


def test_no_active_version_says_how_to_fix(sqlite_url: str, tmp_path: Path) -> None:
    from retrieval.db import make_engine, migrate, session_factory

    migrate(sqlite_url)
    with session_factory(make_engine(sqlite_url))() as session, pytest.raises(NoActiveEncoderError, match="register"):
        active_encoder_version(session=session)


@pytest.mark.slow
def test_register_real_checkpoint(catalog: Catalog, tmp_path: Path) -> None:
    from training.testing import make_untrained_checkpoint

    ckpt = make_untrained_checkpoint(tmp_path / "ck.pt")
    v = register_encoder(ckpt, session=catalog.session, store=catalog.store, activate=True)
    assert v.backbone == "resnet18" and v.dim == 512 and v.image_size == 64 and v.is_active
    assert catalog.store.resolve(ACTIVE_ALIAS) == v.collection
    again = register_encoder(ckpt, session=catalog.session, store=catalog.store)
    assert again.id == v.id


def test_same_file_in_two_datasets_is_two_points(catalog: Catalog) -> None:
    """Two datasets holding the same file: two rows, two points, each point filtered under its own dataset."""
    from retrieval.store import SearchFilter

    cat = catalog
    vec = np.zeros((1, cat.version.dim), dtype=np.float32)
    vec[0, 0] = 1.0
    for name in ("ds-a", "ds-b"):
        ds = get_or_create_dataset(name, session=cat.session)
        row = Image(dataset_id=ds.id, content_hash="same-bytes", source_path=f"/{name}/x.png", width=8, height=8)
        cat.session.add(row)
        cat.session.flush()
        store_embeddings([row], vec, cat.version, session=cat.session, store=cat.store)
    assert cat.store.count(cat.version.collection) == 2
    for name in ("ds-a", "ds-b"):
        (hit,) = cat.store.search(cat.version.collection, vec[0], 5, SearchFilter(dataset=name))
        assert hit.payload["dataset"] == name
