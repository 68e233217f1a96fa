"""Vector store backends: the embedded Qdrant Edge store on a temp dir, and the server backend (qdrant-client's
local mode standing in for a server), including their congruence on the same data and queries.

Contract test against a real Qdrant server: with ``HISTOQUERY_QDRANT_URL`` set (and ``HISTOQUERY_QDRANT_API_KEY``
when it needs one), the same suite also runs on that server (``remote``); otherwise those cases are skipped. Use a
throwaway server: the suite creates and drops collection ``c`` and refuses to start if it exists (docs/deploy.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from retrieval.errors import VectorStoreError
from retrieval.ids import point_id
from retrieval.store.base import SearchFilter
from retrieval.store.edge import EdgeVectorStore
from retrieval.store.server import ServerVectorStore
from tests.support.retrieval_factory import clustered_vectors

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # local mode warns that payload indexes are no-ops

N, DIM = 400, 32
LABELS = [("TUMOR", "STROMA", "LYMPHO", "DEBRIS")[i % 4] for i in range(N)]


def _data() -> tuple[list[str], np.ndarray, list[dict[str, object]]]:
    vecs = clustered_vectors(LABELS, DIM, seed=1)
    ids = [point_id(f"h{i}", "v1") for i in range(N)]
    payloads: list[dict[str, object]] = [
        {
            "image_id": i,
            "dataset": "a" if i < 300 else "b",
            "dataset_id": 1 if i < 300 else 2,
            "label": LABELS[i],
            "slide_id": i % 10,
            "content_hash": f"h{i}",
        }
        for i in range(N)
    ]
    return ids, vecs, payloads


def _remote(config: object = None) -> ServerVectorStore:
    """The server backend on ``HISTOQUERY_QDRANT_URL`` (skips when unset; refuses a server that has ``c``)."""
    url = os.environ.get("HISTOQUERY_QDRANT_URL")
    if not url:
        pytest.skip("contract test: set HISTOQUERY_QDRANT_URL=http://HOST:6333 to run the store suite on a server")
    s = ServerVectorStore.from_url(url, os.environ.get("HISTOQUERY_QDRANT_API_KEY"), config)  # type: ignore[arg-type]
    if s.has_collection("c"):
        s.close()
        pytest.fail(f"{url} already has a collection 'c': run the contract test against a throwaway Qdrant server")
    return s


def _backend(kind: str, tmp_path: Path, config: object = None) -> EdgeVectorStore | ServerVectorStore:
    if kind == "edge":
        return EdgeVectorStore(tmp_path / "q", config)  # type: ignore[arg-type]
    if kind == "server":
        return ServerVectorStore(QdrantClient(":memory:"), config)  # type: ignore[arg-type]
    return _remote(config)


@pytest.fixture(params=["edge", "server", "remote"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EdgeVectorStore | ServerVectorStore]:
    s = _backend(request.param, tmp_path)
    try:
        ids, vecs, payloads = _data()
        s.ensure_collection("c", DIM)
        s.upsert("c", ids, vecs, payloads)
        s.optimize("c")
        yield s
    finally:
        if request.param == "remote":
            s.drop_collection("c")
        s.close()


def test_upsert_is_idempotent(store: EdgeVectorStore | ServerVectorStore) -> None:
    ids, vecs, payloads = _data()
    store.upsert("c", ids[:50], vecs[:50], payloads[:50])
    store.ensure_collection("c", DIM)
    assert store.count("c") == N
    assert sorted(store.list_ids("c")) == sorted(ids)
    np.testing.assert_allclose(store.retrieve("c", ids[:3]), vecs[:3], atol=1e-6)


def test_filters_and_exclusions(store: EdgeVectorStore | ServerVectorStore) -> None:
    _, vecs, _ = _data()
    hits = store.search("c", vecs[0], 20, SearchFilter(label="STROMA", dataset="a"))
    assert len(hits) == 20 and all(h.payload["label"] == "STROMA" and h.payload["dataset"] == "a" for h in hits)
    hits = store.search("c", vecs[0], 50, SearchFilter(exclude_slide_ids=(0, 1), exclude_image_ids=(2,)))
    assert all(h.payload["slide_id"] not in (0, 1) and h.payload["image_id"] != 2 for h in hits)
    hits = store.search("c", vecs[0], 100, SearchFilter(slide_id=3))
    assert {h.payload["slide_id"] for h in hits} == {3} and len(hits) == N // 10
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_aliases_delete_and_errors(store: EdgeVectorStore | ServerVectorStore) -> None:
    ids, vecs, _ = _data()
    store.set_alias("active", "c")
    assert store.resolve("active") == "c" and store.has_collection("active")
    assert store.search("active", vecs[5], 1)[0].payload["image_id"] == 5
    store.delete("c", ids[:10])
    assert store.count("c") == N - 10
    assert set(store.retrieve_existing("c", ids[:12])) == set(ids[10:12])
    with pytest.raises(VectorStoreError, match="missing"):
        store.retrieve("c", ids[:12])
    with pytest.raises(VectorStoreError, match="dimension|-d"):
        store.ensure_collection("c", DIM + 1)
    with pytest.raises(VectorStoreError):
        store.resolve("nope")
    with pytest.raises(ValueError, match="dimension"):
        store.upsert("c", ids[:1], np.zeros((1, DIM + 1), np.float32), [{}])


def test_edge_store_persists_across_reopen(tmp_path: Path) -> None:
    ids, vecs, payloads = _data()
    with EdgeVectorStore(tmp_path / "q") as s:
        s.ensure_collection("c", DIM)
        s.upsert("c", ids, vecs, payloads)
        s.set_alias("active", "c")
    with EdgeVectorStore(tmp_path / "q") as s:
        assert s.count("active") == N
        assert s.search("active", vecs[7], 1)[0].payload["image_id"] == 7
        s.drop_collection("c")
        assert not s.has_collection("c") and not s.has_collection("active")


def test_edge_and_server_backends_agree(tmp_path: Path) -> None:
    """Same data, same queries (plain, filtered, batch): same ids and scores to float tolerance."""
    ids, vecs, payloads = _data()
    edge = EdgeVectorStore(tmp_path / "q")
    server = ServerVectorStore(QdrantClient(":memory:"))
    for s in (edge, server):
        s.ensure_collection("c", DIM)
        s.upsert("c", ids, vecs, payloads)
        s.optimize("c")
    rng = np.random.default_rng(5)
    queries = rng.normal(size=(12, DIM)).astype(np.float32)
    filters = [None, SearchFilter(label="TUMOR"), SearchFilter(dataset="b", exclude_slide_ids=(1,))] * 4
    for q, f in zip(queries, filters, strict=True):
        a = edge.search("c", q, 10, f, exact=True)
        b = server.search("c", q, 10, f)
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
        assert [h.payload for h in a] == [h.payload for h in b]
    ea = edge.search_batch("c", queries, 5, filters, exact=True)
    sb = server.search_batch("c", queries, 5, filters)
    assert [[h.id for h in r] for r in ea] == [[h.id for h in r] for r in sb]
    # the HNSW path of the embedded store agrees with exact search on this small, well-separated set
    approx = edge.search_batch("c", queries, 5, filters)
    assert [[h.id for h in r] for r in approx] == [[h.id for h in r] for r in ea]
    edge.close()
    server.close()


def test_exact_mode_honours_group_and_slide_exclusions(tmp_path: Path) -> None:
    """The embedded store's numpy exact path masks only image ids: a group or slide exclusion goes to the engine.

    Planted bug: the exact path answering a filter with ``exclude_groups`` (groups ignored) fails this test."""
    ids, vecs, payloads = _data()
    for p in payloads:
        p["group"] = f"g{int(p['image_id']) % 5}"  # type: ignore[call-overload]
    with EdgeVectorStore(tmp_path / "q") as s:
        s.ensure_collection("c", DIM)
        s.upsert("c", ids, vecs, payloads)
        for flt in (SearchFilter(exclude_groups=("g0", "g1")), SearchFilter(exclude_slide_ids=(0, 1))):
            hits = s.search("c", vecs[0], 50, flt, exact=True)
            assert len(hits) == 50
            assert not {h.payload["group"] for h in hits} & set(flt.exclude_groups)
            assert not {h.payload["slide_id"] for h in hits} & set(flt.exclude_slide_ids)


@pytest.mark.parametrize("backend", ["edge", "server", "remote"])
def test_int8_quantisation_setting(backend: str, tmp_path: Path) -> None:
    """Scalar int8 quantisation (a setting) still finds the right neighbours after rescoring."""
    from retrieval.store.base import CollectionConfig

    config = CollectionConfig(quantization="int8", hnsw_m=8, hnsw_ef_construct=32)
    s = _backend(backend, tmp_path, config)
    try:
        ids, vecs, payloads = _data()
        s.ensure_collection("c", DIM)
        s.upsert("c", ids, vecs, payloads)
        s.optimize("c")
        top = [s.search("c", vecs[i], 1)[0] for i in range(0, N, 40)]
        assert [h.payload["image_id"] for h in top] == list(range(0, N, 40))
        assert all(h.score == pytest.approx(1.0, abs=1e-3) for h in top)
    finally:
        if backend == "remote":
            s.drop_collection("c")
        s.close()


def test_vectors_by_image_ids(store: EdgeVectorStore | ServerVectorStore) -> None:
    _, vecs, _ = _data()
    got = store.vectors_by_image_ids("c", [3, 7, 99999])
    assert set(got) == {3, 7}
    np.testing.assert_allclose(got[7][0], vecs[7], atol=1e-6)
    assert got[3][1]["slide_id"] == 3


def test_default_int8_collections_return_float_scores_and_exact_mode_is_exact(tmp_path: Path) -> None:
    """New collections are int8-quantised by default; the HNSW path rescores with the float vectors (scores are the
    true cosines), and exact mode bypasses the int8 copies (the same ids as numpy brute force)."""
    from retrieval.settings import Settings
    from retrieval.store.base import CollectionConfig

    assert Settings().quantization == "int8" and CollectionConfig().quantization == "int8"
    rng = np.random.default_rng(3)
    n, dim = 3000, 64
    vecs = rng.normal(size=(n, dim)).astype(np.float32)  # isotropic: a hard case where int8 order errors show
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = [point_id(f"q{i}", "v1") for i in range(n)]
    s = EdgeVectorStore(tmp_path / "q", CollectionConfig(full_scan_threshold_kb=1))  # force the HNSW (int8) path
    s.ensure_collection("c", dim)
    s.upsert("c", ids, vecs, [{"image_id": i} for i in range(n)])
    s.optimize("c")
    queries = rng.normal(size=(20, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    recall = []
    for q in queries:
        truth = np.argsort(-(vecs @ q))[:10]
        hits = s.search("c", q, 10)
        got = [int(h.payload["image_id"]) for h in hits]
        np.testing.assert_allclose([h.score for h in hits], vecs[got] @ q, atol=1e-5)  # rescored: float cosines
        recall.append(len(set(got) & set(truth.tolist())) / 10)
        exact = [int(h.payload["image_id"]) for h in s.search("c", q, 10, exact=True)]
        assert exact == truth.tolist()
    assert float(np.mean(recall)) >= 0.9
    s.close()
