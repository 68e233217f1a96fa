"""The embedded store's upsert hands each row to the bindings as a memoryview of the float32 matrix (not a list of
Python floats): the engine must store exactly what the list path stored, whatever the input's dtype and layout."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from retrieval.ids import point_id
from retrieval.store.base import CollectionConfig
from retrieval.store.edge import EdgeVectorStore


def test_upsert_stores_the_rows_the_list_path_stored(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n, dim = 700, 48  # more than one engine chunk (512)
    base = rng.normal(size=(n, dim))
    ids = [point_id(f"h{i}", "v") for i in range(n)]
    payloads = [{"image_id": i + 1, "label": "a"} for i in range(n)]
    # the reference: the engine fed Python float lists of the float32 rows (the path before)
    ref = qe.EdgeShard.create(
        str(tmp_path / "ref"), qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))
    )
    rows32 = base.astype(np.float32)
    ref.update(qe.UpdateOperation.upsert_points([qe.Point(ids[i], rows32[i].tolist()) for i in range(n)]))
    keys: list[int | uuid.UUID | str] = list(ids)
    want = {str(r.id): np.asarray(r.vector, dtype=np.float32) for r in ref.retrieve(keys, False, True)}
    ref.close()
    inputs: dict[str, np.ndarray] = {
        "float32": rows32,
        "float64": base,  # converted by as_matrix
        "fortran": np.asfortranarray(rows32),  # non-contiguous rows
        "strided": np.repeat(rows32, 2, axis=0)[::2],
    }
    for kind, arr in inputs.items():
        s = EdgeVectorStore(tmp_path / kind, CollectionConfig(vectors_on_disk=True))
        try:
            s.ensure_collection("c", dim)
            s.upsert("c", ids, arr, payloads)
            got = s.retrieve_existing("c", ids)
            assert set(got) == set(want), kind
            assert all(np.array_equal(got[i], want[i]) for i in ids), kind
            assert s.search("c", rows32[123], 1)[0].payload["image_id"] == 124, kind
        finally:
            s.close()
