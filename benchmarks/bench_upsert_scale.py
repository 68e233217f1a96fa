"""Where the upsert time goes at scale (issue 15): one variant of the embedded store's upsert over N vectors, with
the rate of each block of 100,000 points, so that variants can be compared at 1M x 2048 one after the other.

Variants (each monkeypatches one thing in this process only; the product is unchanged):

- ``product``: ``EdgeVectorStore.upsert`` with the ingestion payload (12 fields, 5 payload indexes), vectors on disk;
- ``slim``: the payload cut to the filter fields (image_id, dataset, dataset_id, label, slide_id, group);
- ``no-indexes``: no payload indexes;
- ``no-mirror``: the memory-mapped copy of the vectors not written;
- ``payload-ram``: the engine keeps payloads cached in RAM (``payload_memory=Cached``) instead of cold on disk;
- ``bare``: the engine alone with the store's collection settings, no payload, no indexes, no copy
  (``bench_query.bare_engine_upsert``).

The source vectors (``bench_query.make_vectors``) are written once to ``WORKDIR/x.npy`` and reused; the page cache
is dropped before each run where the process may (root). Upsert time only: the store is closed without
``optimize()``.

    .venv/bin/python benchmarks/bench_upsert_scale.py --n 1000000 --variant product --workdir /var/tmp/ups
    .venv/bin/python benchmarks/bench_upsert_scale.py --n 1000000 --variant bare --workdir /var/tmp/ups
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_query import bare_engine_upsert, make_vectors  # noqa: E402
from retrieval.store import edge  # noqa: E402
from retrieval.store.base import CollectionConfig  # noqa: E402

VARIANTS = ("product", "slim", "no-none", "id-only", "no-indexes", "no-mirror", "payload-ram", "bare")
SLIM_FIELDS = ("image_id", "dataset", "dataset_id", "label", "slide_id", "group")


def payload(i: int, variant: str = "product") -> dict[str, Any]:
    """The ingestion payload's fields for point ``i`` (``retrieval.catalog.point_payload``'s keys); ``slim``: the
    filter fields only; ``no-none``: without the fields whose value is None (a patch, not a slide tile);
    ``id-only``: ``image_id`` alone (what any payload at all costs the engine)."""
    p = {
        "image_id": i + 1,
        "dataset": "bench",
        "dataset_id": 1,
        "label": f"class_{i % 8}",
        "slide_id": None,
        "group": f"g{i // 50}",
        "content_hash": f"{i:064x}",
        "source_path": f"/data/archive/slides/folder/tile_{i:08d}.png",
        "level": None,
        "x": None,
        "y": None,
        "tile_size": None,
    }
    if variant == "slim":
        return {k: p[k] for k in SLIM_FIELDS}
    if variant == "no-none":
        return {k: v for k, v in p.items() if v is not None}
    if variant == "id-only":
        return {"image_id": p["image_id"]}
    return p


def apply_variant(variant: str) -> None:
    import qdrant_edge as qe

    if variant == "no-indexes":
        edge.PAYLOAD_INDEXES.clear()
    elif variant == "no-mirror":
        edge.VectorMirror.write = lambda *a, **k: None  # type: ignore[method-assign]
    elif variant == "payload-ram":
        original = edge.EdgeVectorStore._edge_config

        def config(self: edge.EdgeVectorStore, dim: int) -> Any:
            c = original(self, dim)
            vectors = c.vectors[""] if isinstance(c.vectors, dict) else c.vectors
            return qe.EdgeConfig(vectors=vectors, hnsw_config=c.hnsw_config, quantization_config=c.quantization_config,
                                 payload_memory=qe.Memory.Cached)  # fmt: skip

        edge.EdgeVectorStore._edge_config = config  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--variant", choices=VARIANTS, default="product")
    ap.add_argument("--workdir", type=Path, required=True)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    src = args.workdir / "x.npy"
    if src.exists() and np.load(src, mmap_mode="r").shape == (args.n, args.dim):
        x = np.load(src, mmap_mode="r")
    else:
        x, _ = make_vectors(args.n, args.dim, 0, path=src)
    target = args.workdir / "store"
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(["sync"], check=False)
    with contextlib.suppress(OSError):  # not root: the source vectors may stay cached
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    apply_variant(args.variant)
    load = os.getloadavg()[0]
    block = 100_000
    config = CollectionConfig(vectors_on_disk=True)
    if args.variant == "bare":
        store = edge.EdgeVectorStore(target, config)
        t0 = time.perf_counter()
        rate = bare_engine_upsert(x, target / "bare", store._edge_config(args.dim))
        print(f"bare: {rate:,.0f} points/s over {args.n:,} ({args.n / rate:.1f} s of {time.perf_counter() - t0:.1f})")
    else:
        store = edge.EdgeVectorStore(target, config)
        store.ensure_collection("c", args.dim)
        elapsed, marks = 0.0, []  # (points so far, seconds so far) at each block's end
        for s in range(0, args.n, 1000):
            stop = min(s + 1000, args.n)
            ids = [str(uuid.UUID(int=i + 1)) for i in range(s, stop)]
            payloads = [payload(i, args.variant) for i in range(s, stop)]
            rows = np.ascontiguousarray(x[s:stop])
            t0 = time.perf_counter()
            store.upsert("c", ids, rows, payloads)
            elapsed += time.perf_counter() - t0
            if stop % block == 0 or stop == args.n:
                marks.append((stop, elapsed))
        store._dirty.clear()  # no optimize() on close: upsert time only
        store.close()
        bounds = zip([(0, 0.0), *marks], marks, strict=False)
        per_block = [round((n1 - n0) / (t1 - t0)) for (n0, t0), (n1, t1) in bounds]
        print(f"{args.variant}: {args.n / elapsed:,.0f} points/s over {args.n:,} ({elapsed:.1f} s); per block of "
              f"{block:,}: {per_block}")  # fmt: skip
    shutil.rmtree(target, ignore_errors=True)
    print(f"load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
