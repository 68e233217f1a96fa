"""Upsert path A/B/C: the embedded store's ``upsert`` before and after the issue-15 changes, alternated in one run.

"before" is a frozen copy of the code as it was (kept here, not in the product): integer payload indexes with a range
part, a copy of every payload dict, uuids parsed one by one, mirror rows stored through the memory map and an msync
of the whole mirror at every growth. "tolist" is the product as of 2026-12-02 afternoon (commit 634a5af: each row
handed to the bindings as ``row.tolist()``). "after" is the product's ``EdgeVectorStore.upsert`` (each row handed as a
memoryview of the float32 matrix). All write the same vectors and the ingestion payload
(``retrieval.catalog.point_payload``: 12 fields, 5 payload indexes; the first 20% of the images are slide tiles) into
their own collection, block by block, the order rotating per block so that load drift on a shared machine hits each
alike. Each block's wall time and process CPU time (all threads) are
summed per variant: on a machine whose cores are busy with other work, CPU time per point is the stable figure and
wall throughput an upper bound of what a quiet machine takes. At the end every collection is checked to hold the
same points, engine vectors, payloads, mirror rows and filtered answers as "after". The bare engine (the
store's collection settings, memoryview rows, no payload) runs on the first ``--bare-n`` vectors, and the table
gives its ratio to "after".

    .venv/bin/python benchmarks/bench_upsert.py --n 100000 --store-vectors-on-disk --workdir /var/tmp
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_query import LABELS, bare_engine_upsert, make_vectors  # noqa: E402
from retrieval.store.edge import EdgeVectorStore  # noqa: E402
from retrieval.store.mirror import VectorMirror  # noqa: E402


class OldMirror(VectorMirror):
    """``VectorMirror`` as it was: msync before every growth, uuids one by one, rows through the memory map."""

    def _reserve(self, max_row: int) -> None:
        if max_row < self._rows:
            return
        rows = max(max_row + 1, int(self._rows * 1.5), 1024)
        self.flush()
        self._map(rows)

    def write(self, image_ids: np.ndarray, vectors: np.ndarray, point_ids: Sequence[str]) -> None:
        ids = np.asarray(image_ids, dtype=np.int64)
        vecs = np.asarray(vectors, dtype=np.float32)
        if ids.size == 0:
            return
        uuids = np.zeros((ids.size, 16), dtype=np.uint8)
        valid = np.zeros(ids.size, dtype=bool)
        for j, pid in enumerate(point_ids):
            try:
                uuids[j] = np.frombuffer(uuid.UUID(str(pid)).bytes, dtype=np.uint8)
                valid[j] = True
            except ValueError:
                continue
        norms = np.linalg.norm(vecs, axis=1)
        keep = (ids > 0) & (norms > 0) & np.isfinite(norms) & valid
        ids, vecs, norms, uuids = ids[keep], vecs[keep], norms[keep], uuids[keep]
        if ids.size == 0:
            return
        with self._lock:
            self._reserve(int(ids.max()))
            assert self._vectors is not None and self._present is not None and self._ids is not None
            self._vectors[ids] = vecs / norms[:, None]
            self._ids[ids] = uuids
            self._present[ids] = 1


class TolistStore(EdgeVectorStore):
    """``EdgeVectorStore`` with the 634a5af upsert: each row handed to the bindings as ``row.tolist()``."""

    copy_payload = False  # the upsert before 634a5af also copied each payload into a new dict

    def upsert(self, name: str, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        import qdrant_edge as qe

        from retrieval.store.base import as_matrix
        from retrieval.store.edge import _image_id

        arr = as_matrix(vectors, self.dim(name))
        shard = self._shard(name)
        mirror = self._mirror(name)
        image_ids = np.array([_image_id(p) for p in payloads], dtype=np.int64)
        for start in range(0, len(arr), 512):
            stop = min(start + 512, len(arr))
            points = [
                qe.Point(str(ids[i]), arr[i].tolist(), dict(payloads[i]) if self.copy_payload else payloads[i])
                for i in range(start, stop)
            ]
            shard.update(qe.UpdateOperation.upsert_points(points))
            mirror.write(image_ids[start:stop], arr[start:stop], [str(i) for i in ids[start:stop]])
        self._dirty.add(self.resolve(name))


class OldStore(TolistStore):
    """``EdgeVectorStore`` with the old upsert (a dict copy per payload), old mirror and old integer indexes."""

    copy_payload = True

    def ensure_collection(self, name: str, dim: int) -> None:
        import qdrant_edge as qe

        from retrieval.store.base import PAYLOAD_INDEXES

        super().ensure_collection(name, dim)
        shard = self._shard(name)
        for field, kind in PAYLOAD_INDEXES.items():  # back to lookup + range, as collections were created before
            if kind == "integer":
                shard.update(qe.UpdateOperation.delete_field_index(field))
                shard.update(qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Integer))

    def _mirror(self, name: str) -> VectorMirror:
        with self._lock:
            real = self.resolve(name)
            mirror = self._mirrors.get(real)
            if mirror is None:
                mirror = OldMirror(self.root / "mirrors" / f"{real}.f32", self.dim(real))
                self._mirrors[real] = mirror
            return mirror


def payload_of(i: int, n_tiles: int) -> dict[str, Any]:
    """The ingestion payload of image ``i + 1`` (``retrieval.catalog.point_payload``); the first ``n_tiles`` are tiles
    of 20 slides."""
    from retrieval.catalog import point_payload
    from retrieval.models import Image

    tile = (
        {"slide_id": i % 20 + 1, "level": 0, "x": (i // 20) * 256, "y": 0, "tile_size": 256, "group": f"slide:{i % 20}"}
        if i < n_tiles
        else {}
    )
    image = Image(id=i + 1, dataset_id=1, content_hash=f"h{i:08d}", source_path=f"/bench/{i}.png",
                  label=LABELS[i % len(LABELS)], **tile)  # fmt: skip
    return point_payload(image, "bench")


def same_contents(old: EdgeVectorStore, new: EdgeVectorStore, n: int, seed: int) -> str:
    """Both collections hold the same points, engine vectors, payloads and mirror rows, and answer filters alike:
    'yes' or what differs."""
    from retrieval.store.base import SearchFilter

    if old.count("c") != new.count("c"):
        return f"counts differ: {old.count('c')} / {new.count('c')}"
    ids = np.random.default_rng(seed).choice(np.arange(1, n + 1), size=min(n, 500), replace=False)
    (va, fa), (vb, fb) = old.vector_matrix("c", ids), new.vector_matrix("c", ids)
    if not (fa.all() and fb.all() and np.array_equal(va, vb)):
        return "mirror rows differ"
    pa, pb = old.vectors_by_image_ids("c", ids.tolist()), new.vectors_by_image_ids("c", ids.tolist())
    if {i: p for i, (_, p) in pa.items()} != {i: p for i, (_, p) in pb.items()}:
        return "payloads differ"
    if set(pa) != set(pb) or not all(np.array_equal(pa[i][0], pb[i][0]) for i in pa):
        return "engine vectors differ"
    q = va[0]
    for flt in (SearchFilter(slide_id=3), SearchFilter(label=LABELS[1]), SearchFilter(exclude_slide_ids=(1, 2))):
        ha = [h.payload["image_id"] for h in old.search("c", q, 10, flt, exact=True)]
        hb = [h.payload["image_id"] for h in new.search("c", q, 10, flt, exact=True)]
        if ha != hb or not ha:
            return f"filtered answers differ for {flt}: {ha} / {hb}"
    return "yes"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--block", type=int, default=1000, help="points per store.upsert call (the benchmark's blocks)")
    ap.add_argument("--bare-n", type=int, default=10_000, help="vectors for the bare-engine reference")
    ap.add_argument("--store-vectors-on-disk", action="store_true", help="float vectors cold on disk (as at 1M)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="append the markdown table to this file")
    args = ap.parse_args()
    from retrieval.ids import point_id
    from retrieval.store.base import CollectionConfig

    load0 = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="hq-upsert-", dir=args.workdir))
    try:
        x, _ = make_vectors(args.n, args.dim, args.seed)
        pids = [point_id(f"h{i:08d}", "bench") for i in range(args.n)]
        config = CollectionConfig(quantization="int8", vectors_on_disk=args.store_vectors_on_disk)
        stores: dict[str, EdgeVectorStore] = {"before": OldStore(work / "old", config),
                                              "tolist": TolistStore(work / "tolist", config),
                                              "after": EdgeVectorStore(work / "new", config)}  # fmt: skip
        names = list(stores)
        for s in stores.values():
            s.ensure_collection("c", args.dim)
        wall = dict.fromkeys(stores, 0.0)
        cpu = dict.fromkeys(stores, 0.0)
        blocks: dict[str, list[float]] = {name: [] for name in stores}  # CPU s per block: does the cost grow with N?
        n_tiles = args.n // 5
        for b, start in enumerate(range(0, args.n, args.block)):
            stop = min(start + args.block, args.n)
            payloads = [payload_of(i, n_tiles) for i in range(start, stop)]
            block = np.ascontiguousarray(x[start:stop])
            for name in names[b % 3 :] + names[: b % 3]:  # each variant first in a third of the blocks
                c0, t0 = time.process_time(), time.perf_counter()
                stores[name].upsert("c", pids[start:stop], block, payloads)
                wall[name] += time.perf_counter() - t0
                cpu[name] += time.process_time() - c0
                blocks[name].append((time.process_time() - c0) / (stop - start))
        checks = {name: same_contents(stores[name], stores["after"], args.n, args.seed) for name in names[:-1]}
        bad = [f"{name}: {what}" for name, what in checks.items() if what != "yes"]
        check = "; ".join(bad) if bad else "yes"
        for s in stores.values():
            s._dirty.clear()  # no optimize() on close: this benchmark times the upserts only
            s.close()
        bare_n = min(args.n, args.bare_n)
        c0 = time.process_time()
        bare = bare_engine_upsert(x[:bare_n], work / "bare", stores["after"]._edge_config(args.dim))
        bare_cpu = (time.process_time() - c0) / bare_n
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    with open("/proc/cpuinfo") as fh:
        cpu_name = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    from importlib.metadata import version

    header = [
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
        f"machine: {os.cpu_count()} CPU cores ({cpu_name}), no GPU; {platform.platform()}",
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}; load average at start "
        f"{load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}, at end {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}",
        f"versions: python {platform.python_version()}, numpy {np.__version__}, "
        f"qdrant-edge-py {version('qdrant-edge-py')}",
        f"store: int8, float vectors {'on disk (cold)' if args.store_vectors_on_disk else 'cached'}; "
        f"{args.n:,} x {args.dim}, blocks of {args.block}, order rotating per block; same contents: {check}",
    ]
    lines = ["| variant | points/s (wall) | wall s | CPU µs per point (all threads) | points per CPU-second | CPU µs "
             "per point, first / last tenth of the blocks |", "|---|---|---|---|---|---|"]  # fmt: skip
    tenth = max(1, len(blocks["after"]) // 10)
    for name in names:
        per = cpu[name] / args.n
        trend = f"{np.mean(blocks[name][:tenth]) * 1e6:.1f} / {np.mean(blocks[name][-tenth:]) * 1e6:.1f}"
        lines.append(f"| {name} | {args.n / wall[name]:,.0f} | {wall[name]:.1f} | {per * 1e6:.1f} | {1 / per:,.0f} | "
                     f"{trend} |")  # fmt: skip
    for base in ("before", "tolist"):
        lines.append(f"| after / {base} | {wall[base] / wall['after']:.2f}x | | {cpu['after'] / cpu[base]:.2f}x | "
                     f"{cpu[base] / cpu['after']:.2f}x | |")  # fmt: skip
    lines.append(f"| bare engine (the store's collection settings, memoryview rows, no payload; first {bare_n:,}) | "
                 f"{bare:,.0f} | | {bare_cpu * 1e6:.1f} (incl. row hand-over) | | |")  # fmt: skip
    lines.append(f"| bare engine / after (points/s) | {bare / (args.n / wall['after']):.2f}x | | | | |")
    text = "\n".join(header) + "\n\n" + "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with args.out.open("a") as fh:
            fh.write(text + "\n")
    return 0 if check == "yes" else 1


if __name__ == "__main__":
    sys.exit(main())
