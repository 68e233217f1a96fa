"""Batch pairs and exact mode: ``Retrieval.pair_batch`` / ``histoquery query pairs`` vs numpy on the same vectors.

One embedded store of N D-dimensional vectors (SQLite rows with file paths + the ingestion payload, int8 collection,
optimised), then, in the same process and run:

* batch pairs of stored ids (``Retrieval.pair_batch``, 10k and 100k random pairs) vs numpy (gather the two rows of
  every pair from the same vectors held in RAM, one ``einsum``); the previous code path (``Retrieval.resolve`` of
  every query: vectors through the engine's Python lists, then ``einsum``) in the same run;
* batch pairs of stored file paths (10k pairs: path normalisation + the indexed SQL lookup included) vs numpy with a
  Python dict from path to row;
* a pairs CSV of 10k stored-path rows end to end (``read_pairs_csv`` + ``answer_pairs`` + ``write_decisions_csv``,
  what ``histoquery query pairs`` runs);
* exact mode (``store.search(..., exact=True)``) vs exact numpy brute force (``X @ q`` + argpartition), p50/p95,
  interleaved per query, with recall@10 (1.0 expected);
* sizes per vector / tile for docs/deploy.md: allocated disk of the store and of its memory-mapped copy, SQLite, and
  PostgreSQL bytes per slide tile (images + embeddings rows with indexes, on a throwaway server).

Each batch is timed 3 times (median; the first of the three is reported too, as "cold").

    .venv/bin/python benchmarks/bench_pairs.py --n 100000           # the recorded run
    .venv/bin/python benchmarks/bench_pairs.py --n 2000 --dim 256   # quick smoke run
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_query import LABELS, brute_topk, make_vectors, pct  # noqa: E402


def load(uptime: str = "/proc/loadavg") -> str:
    with open(uptime) as fh:
        return " ".join(fh.read().split()[:3])


def phase(msg: str, t0: float) -> None:
    print(f"  [{time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def rate(fn: Any, n_pairs: int, reps: int = 3) -> tuple[float, float]:
    """(cold, median) pairs/s over ``reps`` calls of ``fn``; cold = the first call."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n_pairs / times[0], n_pairs / statistics.median(times)


def build(n: int, dim: int, work: Path, seed: int) -> tuple[np.ndarray, np.ndarray, list[str], str, Any]:
    """The store, SQL rows and vectors: (x, queries, paths, db url, version)."""
    from sqlalchemy import insert

    from retrieval.catalog import get_or_create_dataset, point_payload
    from retrieval.db import make_engine, migrate, session_factory
    from retrieval.ids import point_id
    from retrieval.models import Embedding, Image
    from retrieval.store.edge import EdgeVectorStore
    from tests.support.retrieval_factory import fake_version

    t0 = time.perf_counter()
    x, cls = make_vectors(n + 50, dim, seed)
    queries, x = x[n:], x[:n]
    labels = np.array(LABELS)[cls[:n]]
    url = f"sqlite:///{work / 'pairs.db'}"
    migrate(url)
    engine = make_engine(url)
    session = session_factory(engine)()
    store = EdgeVectorStore(work / "q")
    version = fake_version(session, store, name=f"bench-{n}", dim=dim)
    ds = get_or_create_dataset("bench", session=session)
    hashes = [f"h{i:08d}" for i in range(n)]
    paths = [f"/bench/tiles/{i:07d}.png" for i in range(n)]
    session.execute(insert(Image), [
        {"id": i + 1, "dataset_id": ds.id, "content_hash": hashes[i], "source_path": paths[i], "label": labels[i],
         "status": "done"} for i in range(n)
    ])  # fmt: skip
    pids = [point_id(h, version.name, ds.id) for h in hashes]
    session.execute(insert(Embedding), [
        {"image_id": i + 1, "encoder_version_id": version.id, "point_id": pids[i]} for i in range(n)
    ])  # fmt: skip
    session.commit()
    payloads = [point_payload(Image(id=i + 1, dataset_id=ds.id, content_hash=hashes[i], source_path=paths[i],
                                    label=labels[i]), "bench") for i in range(n)]  # fmt: skip
    for start in range(0, n, 1000):
        store.upsert(version.collection, pids[start : start + 1000], x[start : start + 1000],
                     payloads[start : start + 1000])  # fmt: skip
    phase(f"N={n}: stored", t0)
    store.optimize(version.collection)
    phase("optimised", t0)
    store.close()
    session.close()
    engine.dispose()
    return x, queries, paths, url, version.name


def allocated_mb(folder: Path, pattern: str = "*") -> float:
    """Disk actually allocated under ``folder`` (sparse files count what they hold), MiB."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob(pattern) if p.is_file()) / 2**20


def _fill_sizing_tables(url: str, n: int) -> None:
    """Migrate ``url`` and insert ``n`` slide tiles of 1,000 slides, with the fields ingestion writes (sha256 content
    hash, slide path, tile coordinates, label) and one embedding row each."""
    import hashlib

    from sqlalchemy import insert

    from retrieval.catalog import get_or_create_dataset
    from retrieval.db import make_engine, migrate, session_factory
    from retrieval.models import Embedding, EncoderVersion, Image, Slide

    migrate(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        ds = get_or_create_dataset("archive", session=session)
        slides = [Slide(dataset_id=ds.id, path=f"/archive/slides/slide-{s:04d}.svs", content_hash=f"s{s}",
                        mpp_source="metadata") for s in range(1000)]  # fmt: skip
        session.add_all(slides)
        version = EncoderVersion(name="v", checkpoint_path="/ck.pt", checkpoint_sha256="0" * 64,
                                 backbone="resnext50_32x4d", representation="backbone", dim=2048,
                                 image_size=224, training_config={}, collection="hq_v")  # fmt: skip
        session.add(version)
        session.flush()
        per_slide = max(1, n // 1000)
        for lo in range(0, n, 50_000):
            hi = min(lo + 50_000, n)
            session.execute(insert(Image), [
                {"id": i + 1, "dataset_id": ds.id, "content_hash": hashlib.sha256(b"%d" % i).hexdigest(),
                 "source_path": slides[i // per_slide % 1000].path, "slide_id": slides[i // per_slide % 1000].id,
                 "level": 0, "x": 224 * (i % per_slide), "y": 224 * (i // per_slide // 1000), "tile_size": 224,
                 "width": 224, "height": 224, "label": LABELS[i % 8], "status": "done"} for i in range(lo, hi)
            ])  # fmt: skip
            session.execute(insert(Embedding), [
                {"image_id": i + 1, "encoder_version_id": version.id,
                 "point_id": f"00000000-0000-0000-0000-{i:012d}"} for i in range(lo, hi)
            ])  # fmt: skip
        session.commit()
    engine.dispose()


def postgres_bytes_per_tile(n: int) -> dict[str, float]:
    """Bytes per slide tile in PostgreSQL (images + embeddings rows with their indexes), measured on a throwaway
    server (:func:`_fill_sizing_tables`)."""
    from sqlalchemy import text

    from retrieval.db import make_engine
    from tests.support.services import postgres_server

    with postgres_server() as pg:
        url = pg.create_database("sizing")
        _fill_sizing_tables(url, n)
        engine = make_engine(url)
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            sizes = {
                t: float(conn.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar_one())
                for t in ("images", "embeddings")
            }
        engine.dispose()
    return {t: v / n for t, v in sizes.items()}


def sqlite_bytes_per_tile(n: int, work: Path) -> dict[str, float]:
    """Bytes per slide tile in the embedded default's SQLite file (images + embeddings, each with its indexes, from
    the ``dbstat`` table after ``VACUUM``; ``file``: the whole file), same rows as :func:`postgres_bytes_per_tile`."""
    import sqlite3

    path = work / "sizing.db"
    _fill_sizing_tables(f"sqlite:///{path}", n)
    with sqlite3.connect(path) as conn:
        conn.execute("VACUUM")
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        sizes = {"images": 0.0, "embeddings": 0.0}
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            if table in sizes:
                sizes[table] += float(size)
    sizes["file"] = float(path.stat().st_size)
    return {t: v / n for t, v in sizes.items()}


def run(n: int, dim: int, work: Path, seed: int, queries_n: int) -> dict[str, Any]:
    from retrieval.api import Retrieval
    from retrieval.catalog import active_encoder_version
    from retrieval.db import make_engine, session_factory
    from retrieval.pairs_io import answer_pairs, read_pairs_csv, write_decisions_csv
    from retrieval.store.edge import EdgeVectorStore

    t0 = time.perf_counter()
    x, queries, paths, url, name = build(n, dim, work, seed)
    res: dict[str, Any] = {"n": n, "dim": dim, "load_start": load()}
    res["disk_store_mb"] = allocated_mb(work / "q")
    res["disk_mirror_mb"] = allocated_mb(work / "q" / "mirrors")
    res["disk_sqlite_mb"] = allocated_mb(work, "pairs.db*")
    engine = make_engine(url)
    session = session_factory(engine)()
    store = EdgeVectorStore(work / "q")
    r = Retrieval(session=session, store=store, version=active_encoder_version(session=session, name=name))
    rng = np.random.default_rng(seed + 1)
    ids100k = rng.integers(1, n + 1, size=(100_000, 2))
    pairs10k = [(int(a), int(b)) for a, b in ids100k[:10_000]]
    pairs100k = [(int(a), int(b)) for a, b in ids100k]
    path_pairs = [(paths[a - 1], paths[b - 1]) for a, b in pairs10k]

    # correctness first: ours equals numpy on the same vectors
    got = np.array([p.cos for p in r.pair_batch(pairs10k)])
    pa = ids100k[:10_000] - 1
    want = np.einsum("ij,ij->i", x[pa[:, 0]], x[pa[:, 1]])
    res["max_abs_diff"] = float(np.max(np.abs(got - want)))
    got_p = np.array([p.cos for p in r.pair_batch(path_pairs)])
    res["max_abs_diff_paths"] = float(np.max(np.abs(got_p - want)))
    phase("pairs checked against numpy", t0)

    def numpy_ids(p: np.ndarray) -> np.ndarray:
        q = p - 1
        return np.einsum("ij,ij->i", x[q[:, 0]], x[q[:, 1]])

    row_of = {p: i for i, p in enumerate(paths)}

    def numpy_paths() -> np.ndarray:
        ia = np.fromiter((row_of[a] for a, _ in path_pairs), dtype=np.int64, count=len(path_pairs))
        ib = np.fromiter((row_of[b] for _, b in path_pairs), dtype=np.int64, count=len(path_pairs))
        return np.einsum("ij,ij->i", x[ia], x[ib])

    def previous_path(pairs: list[tuple[int, int]]) -> None:  # the code before this change: resolve() + einsum
        flat = [q for pair in pairs for q in pair]
        v = r.resolve(flat).vectors
        np.einsum("ij,ij->i", v[0::2], v[1::2])

    # "cold" = the first of the timed calls (the correctness check above has already read these rows once)
    res["ids10k"] = rate(lambda: r.pair_batch(pairs10k), 10_000)
    res["np_ids10k"] = rate(lambda: numpy_ids(ids100k[:10_000]), 10_000)
    res["ids100k"] = rate(lambda: r.pair_batch(pairs100k), 100_000)
    res["np_ids100k"] = rate(lambda: numpy_ids(ids100k), 100_000)
    res["prev_ids10k"] = rate(lambda: previous_path(pairs10k[:2000]), 2000, reps=1)
    phase("stored-id pairs timed", t0)
    res["paths10k"] = rate(lambda: r.pair_batch(path_pairs), 10_000)
    res["np_paths10k"] = rate(numpy_paths, 10_000)
    csv_in, csv_out = work / "pairs.csv", work / "decisions.csv"
    with csv_in.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_a", "image_b"])
        w.writerows(path_pairs)

    def cli_like() -> None:
        pf = read_pairs_csv(csv_in)
        write_decisions_csv(csv_out, pf, answer_pairs(r, pf))

    res["csv10k"] = rate(cli_like, 10_000)
    phase(f"path pairs timed: { {k: v for k, v in res.items() if isinstance(v, tuple)} }", t0)

    coll = r.version.collection
    k = 10
    exact_np, exact_ours = [], []
    t_np, t_ours = [], []
    store.search(coll, queries[0], k, exact=True)  # warm-up (maps the vectors)
    brute_topk(x, queries[0], k)
    for i in range(queries_n):
        q = queries[i % len(queries)]
        s0 = time.perf_counter()
        hits = store.search(coll, q, k, exact=True)
        t_ours.append(time.perf_counter() - s0)
        s0 = time.perf_counter()
        top = brute_topk(x, q, k)
        t_np.append(time.perf_counter() - s0)
        exact_ours.append({int(h.payload["image_id"]) for h in hits})
        exact_np.append({int(j) + 1 for j in top})
    copy_ok = store._mirror(coll).count() == int(store._shard(coll).info().points_count)
    res["exact_path"] = "numpy over the memory-mapped copy" if copy_ok else "engine"
    res["exact"] = pct(t_ours)
    res["np_exact"] = pct(t_np)
    res["exact_recall"] = float(np.mean([len(a & b) / k for a, b in zip(exact_ours, exact_np, strict=True)]))
    phase("exact mode timed", t0)
    res["load_end"] = load()
    store.close()
    session.close()
    engine.dispose()
    return res


def table(res: dict[str, Any]) -> str:
    n = f"{res['n']:,}"

    def row(label: str, ours: str, base: str) -> str:
        o, b = res[ours], res[base]
        return f"| {label} | {n} | {o[1]:,.0f} (cold {o[0]:,.0f}) | {b[1]:,.0f} | {b[1] / o[1]:.2f}x |"

    lines = [
        "| metric | N | ours | numpy, same vectors in RAM | numpy / ours |",
        "|---|---|---|---|---|",
        row("batch pairs, 10k stored-id pairs, pairs/s", "ids10k", "np_ids10k"),
        row("batch pairs, 100k stored-id pairs, pairs/s", "ids100k", "np_ids100k"),
        row("batch pairs, 10k stored file-path pairs (path lookup included), pairs/s", "paths10k", "np_paths10k"),
        f"| pairs CSV, 10k stored-path rows: read + answer + write, rows/s | {n} | {res['csv10k'][1]:,.0f} | - | - |",
        f"| previous code path (resolve() + einsum), 2k stored-id pairs, pairs/s | {n} | {res['prev_ids10k'][1]:,.0f}"
        f" | {res['np_ids10k'][1]:,.0f} | {res['np_ids10k'][1] / res['prev_ids10k'][1]:.1f}x |",
        f"| exact mode top-10 p50 / p95 ms (recall@10 vs numpy; {res['exact_path']}) | {n} | "
        f"{res['exact'][0]:.2f} / {res['exact'][1]:.2f}"
        f" ({res['exact_recall']:.4f}) | {res['np_exact'][0]:.2f} / {res['np_exact'][1]:.2f} |"
        f" {res['np_exact'][0] / res['exact'][0]:.2f}x |",
        f"| max abs(cos ours - numpy), ids / paths | {n} | {res['max_abs_diff']:.2e} / {res['max_abs_diff_paths']:.2e}"
        " | - | - |",
        f"| disk: store (engine + copy) / memory-mapped copy / SQLite (images + embeddings + indexes), MiB | {n} | "
        f"{res['disk_store_mb']:.0f} / {res['disk_mirror_mb']:.0f} / {res['disk_sqlite_mb']:.0f} | "
        f"raw vectors {res['n'] * res['dim'] * 4 / 2**20:.0f} | - |",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--queries", type=int, default=50, help="exact-mode queries")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-postgres", dest="postgres", action="store_false", help="skip the PostgreSQL size part")
    ap.add_argument("--sizes-only", action="store_true", help="only the SQL bytes per tile (SQLite, PostgreSQL)")
    ap.add_argument("--out", type=Path, default=None, help="append the markdown table to this file")
    args = ap.parse_args()
    import logging

    from bench_query import versions

    logging.basicConfig(level=logging.WARNING)
    with open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    work = Path(tempfile.mkdtemp(prefix="hq-bench-pairs-"))
    try:
        res = None if args.sizes_only else run(args.n, args.dim, work, args.seed, args.queries)
        lite = sqlite_bytes_per_tile(args.n, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pg = postgres_bytes_per_tile(args.n) if args.postgres else None
    sizes = (
        f"\nSQLite ({args.n:,} slide tiles of 1,000 slides, after VACUUM): images {lite['images']:.0f} B/tile, "
        f"embeddings {lite['embeddings']:.0f} B/tile (tables + indexes, dbstat), whole file {lite['file']:.0f} B/tile\n"
    )
    if pg is not None:
        sizes += (
            f"\nPostgreSQL (throwaway server, {args.n:,} slide tiles of 1,000 slides): images "
            f"{pg['images']:.0f} B/tile, embeddings {pg['embeddings']:.0f} B/tile (tables + indexes)\n"
        )
    if res is None:
        print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n" + sizes)
        return 0
    header = [
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
        f"machine: {os.cpu_count()} CPU cores ({cpu}), no GPU; {platform.platform()}",
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"load average (1/5/15 min) at start of timing: {res['load_start']}; at end: {res['load_end']}",
        f"versions: {versions()}",
        "store: embedded qdrant-edge, int8 collection (rescored), SQLite; baseline: numpy on the same vectors in RAM",
    ]
    text = "\n".join(header) + "\n\n" + table(res) + "\n" + sizes
    print(text)
    if args.out:
        with args.out.open("a") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
