"""The cluster map samples without reading every stored vector or every SQL row (issue 15).

``retrieval.projection`` draws a seeded sample of image ids in SQL and reads the vectors of those ids only. A
counting wrapper around the real embedded store shows how many vectors a projection reads; ``tracemalloc`` shows
that the SQL side no longer materialises one row per stored vector.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, select

from retrieval.catalog import get_or_create_dataset
from retrieval.errors import EmptyCollectionError, RetrievalError
from retrieval.models import Embedding, Image
from retrieval.projection import load_or_compute, sample_embeddings, sample_image_ids
from retrieval.store.edge import EdgeVectorStore
from tests.support.retrieval_factory import Catalog, fake_version, populate


class CountingStore:
    """The real embedded store; every vector it hands out is counted (``vectors_read``), by method (``calls``).

    Methods not listed here pass through uncounted; none of them returns vectors.
    """

    def __init__(self, inner: EdgeVectorStore) -> None:
        self.inner = inner
        self.vectors_read = 0
        self.calls: dict[str, int] = {}

    def _count(self, method: str, n: int) -> None:
        self.vectors_read += n
        self.calls[method] = self.calls.get(method, 0) + n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def vector_matrix(self, name: str, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, found = self.inner.vector_matrix(name, image_ids)
        self._count("vector_matrix", int(np.count_nonzero(found)))
        return rows, found

    def retrieve(self, name: str, ids: Sequence[str]) -> np.ndarray:
        out = self.inner.retrieve(name, ids)
        self._count("retrieve", len(out))
        return out

    def retrieve_existing(self, name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        out = self.inner.retrieve_existing(name, ids)
        self._count("retrieve_existing", len(out))
        return out

    def vectors_by_image_ids(self, name: str, image_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, dict[str, Any]]]:
        out = self.inner.vectors_by_image_ids(name, image_ids)
        self._count("vectors_by_image_ids", len(out))
        return out

    def list_ids(self, name: str) -> list[str]:
        out = self.inner.list_ids(name)
        self._count("list_ids", len(out))
        return out


N_STORED = 1500
MAX_POINTS = 100


def test_projection_reads_only_the_sampled_vectors(any_catalog: Catalog, tmp_path: Path) -> None:
    rows, vecs = populate(any_catalog, [f"L{i % 5}" for i in range(N_STORED)])
    vec_of = {int(r.id): vecs[i] for i, r in enumerate(rows)}
    store = CountingStore(any_catalog.store)
    version = any_catalog.version

    proj = load_or_compute(version, "pca", home=tmp_path, session=any_catalog.session, store=store,
                           max_points=MAX_POINTS, seed=3)  # fmt: skip

    assert store.vectors_read <= MAX_POINTS, store.calls  # the whole collection would be 1,500
    assert len(proj.image_ids) == MAX_POINTS and proj.total == N_STORED and proj.sampled
    assert proj.coords.shape == (MAX_POINTS, 2)

    store.vectors_read = 0
    ids, got = sample_embeddings(version, MAX_POINTS, 3, session=any_catalog.session, store=store)
    assert store.vectors_read == MAX_POINTS
    np.testing.assert_array_equal(ids, proj.image_ids)  # the projection's points are this sample
    assert len(set(ids.tolist())) == MAX_POINTS and set(ids.tolist()) <= set(vec_of)
    assert list(ids) == sorted(ids)
    np.testing.assert_allclose(got, np.stack([vec_of[int(i)] for i in ids]), atol=1e-6)  # each id's own vector

    # seeded: the same seed gives the same sample, another seed another one; spread over the whole id range
    again = sample_image_ids(version, MAX_POINTS, 3, session=any_catalog.session)
    other = sample_image_ids(version, MAX_POINTS, 4, session=any_catalog.session)
    np.testing.assert_array_equal(again, ids)
    assert len(set(other.tolist()) & set(ids.tolist())) < MAX_POINTS // 2
    lo, hi = min(vec_of), max(vec_of)
    thirds = np.histogram(ids, bins=3, range=(lo, hi + 1))[0]
    assert thirds.min() >= 20, thirds  # ~33 each for a uniform sample; an id-ordered prefix would put 100 in one


def test_small_collection_is_read_whole_and_empty_one_says_so(catalog: Catalog) -> None:
    with pytest.raises(EmptyCollectionError, match="ingest images first"):
        sample_image_ids(catalog.version, 10, 0, session=catalog.session)
    rows, _ = populate(catalog, ["a", "b", "c", "a", "b"])
    ids = sample_image_ids(catalog.version, 10, 0, session=catalog.session)
    assert ids.tolist() == sorted(int(r.id) for r in rows)
    with pytest.raises(RetrievalError, match="at least 1"):
        sample_image_ids(catalog.version, 0, 0, session=catalog.session)


def test_a_store_that_lost_a_sampled_point_is_an_error_that_names_doctor(catalog: Catalog) -> None:
    rows, _ = populate(catalog, ["a"] * 20)
    gone = catalog.session.scalar(select(Embedding.point_id).where(Embedding.image_id == rows[7].id))
    catalog.store.delete(catalog.version.collection, [str(gone)])
    with pytest.raises(RetrievalError, match="histoquery doctor"):
        sample_embeddings(catalog.version, 50, 0, session=catalog.session, store=catalog.store)


def test_sql_side_does_not_materialise_every_row(catalog: Catalog) -> None:
    """20,000 embedding rows (SQL only): the sample's peak Python memory is a small fraction of reading them all,
    which is what the sampler did before (one (image_id, point_id) row per stored vector)."""
    n = 20_000
    version = fake_version(catalog.session, catalog.store, name="sql-only", activate=False)
    ds = get_or_create_dataset("big", session=catalog.session)
    catalog.session.execute(insert(Image), [
        {"id": i, "dataset_id": ds.id, "content_hash": f"h{i}", "source_path": f"/x/{i}.png", "status": "done"}
        for i in range(1, n + 1)
    ])  # fmt: skip
    catalog.session.execute(insert(Embedding), [
        {"image_id": i, "encoder_version_id": version.id, "point_id": f"00000000-0000-0000-0000-{i:012d}"}
        for i in range(1, n + 1)
    ])  # fmt: skip
    catalog.session.commit()

    def peak(fn: Any) -> tuple[int, Any]:
        fn()  # warm SQLAlchemy's statement caches outside the measurement
        tracemalloc.start()
        try:
            out = fn()
            return tracemalloc.get_traced_memory()[1], out
        finally:
            tracemalloc.stop()

    every_row, all_rows = peak(
        lambda: catalog.session.execute(
            select(Embedding.image_id, Embedding.point_id).where(Embedding.encoder_version_id == version.id)
        ).all()
    )
    sampled, ids = peak(lambda: sample_image_ids(version, 50, 0, session=catalog.session))
    assert len(all_rows) == n and len(ids) == 50
    assert sampled < every_row / 10, (sampled, every_row)
