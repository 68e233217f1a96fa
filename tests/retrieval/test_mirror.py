"""The embedded store's memory-mapped vector copy (``retrieval.store.mirror``): rows by image id that grow, persist
and clear; and exact mode answered from it, equal to numpy brute force (and the engine where it must answer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.ids import point_id
from retrieval.store.base import SearchFilter
from retrieval.store.edge import EdgeVectorStore
from retrieval.store.mirror import VectorMirror


def test_rows_grow_persist_and_clear(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 8)).astype(np.float32)
    m = VectorMirror(tmp_path / "m.f32", 8)
    pids = [point_id(f"h{i}", "v") for i in range(3)]
    m.write(np.array([5, 3000, 3]), v, pids)  # 3000: beyond the first mapping, the files grow
    # a zero vector, a bad image id, a point id that is not a uuid: not kept
    m.write(np.array([7, -1, 9]), np.stack([np.zeros(8, np.float32), v[0], v[1]]), [pids[0], pids[1], "x"])
    rows, found = m.read(np.array([3, 5, 7, 3000, 0, 99_999, 5, 9]))
    assert found.tolist() == [True, True, False, True, False, False, True, False]
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    np.testing.assert_allclose(rows[[1, 0, 3, 6]], unit[[0, 2, 1, 0]], atol=1e-6)
    assert not rows[[2, 4, 5, 7]].any()
    m.clear(np.array([5, 123_456]))
    assert m.count() == 2
    m.close()
    again = VectorMirror(tmp_path / "m.f32", 8)  # reopened: rows and presence persisted
    rows, found = again.read(np.array([3, 5, 3000]))
    assert found.tolist() == [True, False, True]
    np.testing.assert_allclose(rows[[0, 2]], unit[[2, 1]], atol=1e-6)
    assert again.present_ids().tolist() == [3, 3000]
    assert again.point_ids([3000, 3]) == [pids[1], pids[2]]


@pytest.fixture
def store(tmp_path: Path) -> tuple[EdgeVectorStore, np.ndarray, list[int]]:
    rng = np.random.default_rng(1)
    n, dim = 300, 16
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    image_ids = [2 * i + 1 for i in range(n)]  # odd ids: the even rows of the copy are holes
    s = EdgeVectorStore(tmp_path / "q")
    s.ensure_collection("c", dim)
    payloads = [{"image_id": i, "label": "A" if k % 2 else "B"} for k, i in enumerate(image_ids)]
    s.upsert("c", [point_id(f"h{i}", "v") for i in image_ids], vecs, payloads)
    s.optimize("c")
    return s, vecs, image_ids


def _brute(vecs: np.ndarray, ids: list[int], q: np.ndarray, k: int, keep: np.ndarray | None = None) -> list[int]:
    s = vecs @ (q / np.linalg.norm(q))
    if keep is not None:
        s = np.where(keep, s, -np.inf)
    return [ids[j] for j in np.argsort(-s, kind="stable")[:k]]


def test_exact_mode_from_the_copy_equals_numpy(store: tuple[EdgeVectorStore, np.ndarray, list[int]]) -> None:
    s, vecs, ids = store
    # a query opposite to most vectors: most scores are negative, so the holes' zero rows would win if counted
    q = -vecs.mean(axis=0) * 3.0
    hits = s.search("c", q, 20, exact=True)
    assert [h.payload["image_id"] for h in hits] == _brute(vecs, ids, q, 20)
    want = vecs @ (q / np.linalg.norm(q))
    np.testing.assert_allclose([h.score for h in hits], np.sort(want)[::-1][:20], atol=1e-5)
    assert {h.id for h in hits} <= {point_id(f"h{i}", "v") for i in ids}
    excluded = tuple(h.payload["image_id"] for h in hits[:3])
    got = s.search("c", q, 5, SearchFilter(exclude_image_ids=excluded), exact=True)
    keep = ~np.isin(ids, excluded)
    assert [h.payload["image_id"] for h in got] == _brute(vecs, ids, q, 5, keep)
    # a payload filter is the engine's (still exact), and a batch answers like single queries
    only_a = s.search("c", q, 5, SearchFilter(label="A"), exact=True)
    assert [h.payload["image_id"] for h in only_a] == _brute(vecs, ids, q, 5, np.arange(len(ids)) % 2 == 1)
    batch = s.search_batch("c", np.stack([q, vecs[0]]), 4, exact=True)
    assert [[h.id for h in hs] for hs in batch] == [
        [h.id for h in s.search("c", x, 4, exact=True)] for x in (q, vecs[0])
    ]


def test_exact_mode_after_deletes_and_without_the_copy(
    store: tuple[EdgeVectorStore, np.ndarray, list[int]], tmp_path: Path
) -> None:
    s, vecs, ids = store
    q = vecs[10] + 0.1 * vecs[11]
    first = s.search("c", q, 3, exact=True)
    s.delete("c", [first[0].id])  # cleared from the copy before the engine
    after = s.search("c", q, 3, exact=True)
    keep = np.array([i != first[0].payload["image_id"] for i in ids])
    assert [h.payload["image_id"] for h in after] == _brute(vecs, ids, q, 3, keep)
    s.close()
    for f in (tmp_path / "q" / "mirrors").iterdir():  # a store from before the copy existed: the engine answers
        f.unlink()
    reopened = EdgeVectorStore(tmp_path / "q")
    assert [h.payload["image_id"] for h in reopened.search("c", q, 3, exact=True)] == _brute(vecs, ids, q, 3, keep)
    reopened.close()


def test_float_vectors_on_disk_setting_reaches_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HISTOQUERY_VECTORS_ON_DISK=1: new collections keep their float vectors cold on disk (int8 copies in RAM)."""
    import json

    from retrieval.settings import Settings
    from retrieval.store import collection_config

    monkeypatch.setenv("HISTOQUERY_VECTORS_ON_DISK", "1")
    config = collection_config(Settings())
    assert config.vectors_on_disk is True
    rng = np.random.default_rng(2)
    vecs = rng.normal(size=(50, 8)).astype(np.float32)
    s = EdgeVectorStore(tmp_path / "q", config)
    s.ensure_collection("c", 8)
    s.upsert("c", [point_id(f"h{i}", "v") for i in range(50)], vecs, [{"image_id": i + 1} for i in range(50)])
    s.optimize("c")
    engine = json.loads((tmp_path / "q" / "collections" / "c" / "edge_config.json").read_text())
    assert engine["vectors"][""].get("memory") == "cold" or engine["vectors"][""].get("on_disk") is True, engine
    assert s.search("c", vecs[3], 1)[0].payload["image_id"] == 4
    s.close()


def test_exact_mode_without_holes_applies_exclusions_and_counts(tmp_path: Path) -> None:
    """Ids 1..n with no gap take the path that skips the absent-row mask. Planted bug: exclusions not applied on
    that path fail this test. (Row 0 left in the ranking is caught by the copy-vs-engine check, which then answers
    from the engine.)"""
    rng = np.random.default_rng(2)
    n, dim = 50, 8
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = list(range(1, n + 1))
    s = EdgeVectorStore(tmp_path / "q")
    s.ensure_collection("c", dim)
    s.upsert("c", [point_id(f"h{i}", "v") for i in ids], vecs, [{"image_id": i} for i in ids])
    q = -vecs.mean(axis=0)  # most scores negative: row 0's zero vector would rank high if it were counted
    excluded = tuple(_brute(vecs, ids, q, 3)) + (0, 10_000)  # 0 and an unknown id are ignored
    got = s.search("c", q, n, SearchFilter(exclude_image_ids=excluded), exact=True)
    keep = ~np.isin(ids, excluded)
    assert [h.payload["image_id"] for h in got] == _brute(vecs, ids, q, n - 3, keep)


def test_rows_written_in_any_order_match_a_numpy_reference(tmp_path: Path) -> None:
    """Rows go to the file in runs of consecutive ids (one pwrite each), not through the map: shuffled batches with
    gaps, a repeated id (the last row wins), growth between batches and point ids in any uuid spelling still give
    exactly what a plain array would hold, through a mapping opened before the writes and after a reopen."""
    import uuid

    rng = np.random.default_rng(3)
    dim = 8
    m = VectorMirror(tmp_path / "m.f32", dim)
    want: dict[int, tuple[np.ndarray, str]] = {}
    old_map_ids = np.array([10, 11, 12])
    m.write(old_map_ids, rng.normal(size=(3, dim)).astype(np.float32), [point_id(f"o{i}", "v") for i in range(3)])
    early_view = m.matrix()  # the mapping before the file grows
    spellings = [str, lambda u: u.upper(), lambda u: u.replace("-", ""), lambda u: "{" + u + "}"]
    for batch in range(4):
        ids = np.concatenate([np.arange(100 * batch + 1, 100 * batch + 40), [5000 * (batch + 1), 100 * batch + 7]])
        ids = ids[rng.permutation(ids.size)]
        vecs = rng.normal(size=(ids.size, dim)).astype(np.float32)
        pids = [point_id(f"b{batch}-{j}", "v") for j in range(ids.size)]
        m.write(ids, vecs, [spellings[j % 4](p) for j, p in enumerate(pids)])
        for j, i in enumerate(ids.tolist()):  # in batch order: a repeated id keeps its last row
            want[i] = (vecs[j] / np.linalg.norm(vecs[j]), pids[j])
    for i in old_map_ids.tolist():
        want.pop(i, None)
    for reader in (m, VectorMirror(tmp_path / "m.f32", dim)):
        keys = np.array(sorted(want))
        rows, found = reader.read(keys)
        assert found.all()
        np.testing.assert_allclose(rows, np.stack([want[i][0] for i in keys.tolist()]), atol=1e-6)
        assert reader.point_ids(keys.tolist()) == [str(uuid.UUID(want[i][1])) for i in keys.tolist()]
        assert not reader.read(np.array([41, 4999]))[1].any()  # holes between the runs stay absent
        if reader is not m:
            reader.close()
    assert early_view.shape[0] <= m.rows and np.asarray(early_view[10]).any()  # the old mapping still reads
    m.close()


def test_integer_payload_indexes_are_lookup_only(tmp_path: Path) -> None:
    """Integer payload fields are matched exactly, never by range: their indexes skip the range part, which every
    upsert would keep up for nothing (the old collections' ``PayloadSchemaType.Integer`` built both)."""
    from retrieval.store.base import PAYLOAD_INDEXES

    s = EdgeVectorStore(tmp_path / "q")
    s.ensure_collection("c", 4)
    schema = s._shard("c").info().payload_schema
    assert set(schema) == set(PAYLOAD_INDEXES)
    for name, kind in PAYLOAD_INDEXES.items():
        if kind == "integer":
            params = schema[name].params
            assert params is not None and params.lookup is True and params.range is False, name
    s.upsert("c", [point_id("h1", "v")], np.ones((1, 4), np.float32), [{"image_id": 1, "slide_id": 9, "label": "A"}])
    assert [h.payload["image_id"] for h in s.search("c", np.ones(4), 5, SearchFilter(slide_id=9))] == [1]
    assert s.search("c", np.ones(4), 5, SearchFilter(exclude_slide_ids=(9,))) == []
    s.close()
