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
  interleaved per query, with recall@10 (1.0 expected).

Each batch is timed 3 times (median; the first call after reopening the store is reported too, as "cold").

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


def run(n: int, dim: int, work: Path, seed: int, queries_n: int) -> dict[str, Any]:
    from retrieval.api import Retrieval
    from retrieval.catalog import active_encoder_version
    from retrieval.db import make_engine, session_factory
    from retrieval.pairs_io import answer_pairs, read_pairs_csv, write_decisions_csv
    from retrieval.store.edge import EdgeVectorStore

    t0 = time.perf_counter()
    x, queries, paths, url, name = build(n, dim, work, seed)
    res: dict[str, Any] = {"n": n, "dim": dim, "load_start": load()}
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

    # the store was reopened above: the "cold" column of the first row is the first read of the memory map
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
        f"| exact mode top-10 p50 / p95 ms (recall@10 vs numpy) | {n} | {res['exact'][0]:.2f} / {res['exact'][1]:.2f}"
        f" ({res['exact_recall']:.4f}) | {res['np_exact'][0]:.2f} / {res['np_exact'][1]:.2f} |"
        f" {res['np_exact'][0] / res['exact'][0]:.2f}x |",
        f"| max abs(cos ours - numpy), ids / paths | {n} | {res['max_abs_diff']:.2e} / {res['max_abs_diff_paths']:.2e}"
        " | - | - |",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--queries", type=int, default=50, help="exact-mode queries")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="append the markdown table to this file")
    args = ap.parse_args()
    import logging

    from bench_query import versions

    logging.basicConfig(level=logging.WARNING)
    with open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    work = Path(tempfile.mkdtemp(prefix="hq-bench-pairs-"))
    try:
        res = run(args.n, args.dim, work, args.seed, args.queries)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    header = [
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
        f"machine: {os.cpu_count()} CPU cores ({cpu}), no GPU; {platform.platform()}",
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"load average (1/5/15 min) at start of timing: {res['load_start']}; at end: {res['load_end']}",
        f"versions: {versions()}",
        "store: embedded qdrant-edge, int8 collection (rescored), SQLite; baseline: numpy on the same vectors in RAM",
    ]
    text = "\n".join(header) + "\n\n" + table(res) + "\n"
    print(text)
    if args.out:
        with args.out.open("a") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
