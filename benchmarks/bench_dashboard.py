"""Dashboard speed with a large index: time to first render of every page in a real browser, a search after the
page has loaded once, and the cluster page on a cached projection.

The index: N (default 100,000) synthetic vectors inserted DIRECTLY into the embedded vector store plus their SQL rows
(images, embeddings): random unit vectors drawn around 8 class centres (so labels cluster), 512-d to match the tiny
registered resnet18 encoder (an untrained checkpoint; its weights do not matter for timing). The images' source
files cycle through the shipped Kather sample so that thumbnails are real pixels. No ingestion is run.

Side by side (one run, same index):
  * backend, in-process: a top-k search through the dashboard's cached services vs a naive dashboard that opens
    ``Retrieval.from_settings`` for every request; the cluster map from the cached projection vs recomputing it.
  * browser (streamlit run + headless Chromium): first render of each page (cold server), a second visit
    (warm caches), a search after the page has loaded (clicking "Search with this"), against the targets
    (search < 1 s, cluster page < 3 s on a cached projection).

    .venv/bin/python benchmarks/bench_dashboard.py [--n 100000] [--home /tmp/hq-bench-dashboard] [--rebuild]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LABELS = ("01_TUMOR", "02_STROMA", "03_COMPLEX", "04_LYMPHO", "05_DEBRIS", "06_MUCOSA", "07_ADIPOSE", "08_EMPTY")
CHUNK = 5000


def build_index(home: Path, n: int, dim: int = 512, seed: int = 0) -> dict[str, Any]:
    """Create an index of ``n`` synthetic vectors under ``home`` (SQL rows + vector store points)."""
    from sqlalchemy import insert

    from retrieval import catalog
    from retrieval.db import make_engine, migrate, session_factory
    from retrieval.ids import point_id
    from retrieval.models import Embedding, Image
    from retrieval.settings import get_settings
    from retrieval.store import open_vector_store
    from training.testing import make_untrained_checkpoint

    settings = get_settings(home=home)
    migrate(settings.db_url)
    engine = make_engine(settings.db_url)
    store = open_vector_store(settings)
    samples = sorted((ROOT / "samples" / "kather2016").glob("*/*"))
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(LABELS), dim)).astype(np.float32)
    t0 = time.perf_counter()
    try:
        ckpt = make_untrained_checkpoint(home / "checkpoints" / "tiny.pt", backbone="resnet18", image_size=64)
        with session_factory(engine)() as session:
            version = catalog.register_encoder(ckpt, session=session, store=store, name="bench-r18", activate=True)
            assert version.dim == dim, f"encoder dim {version.dim} != {dim}"
            datasets = [catalog.get_or_create_dataset(f"bench-{i}", session=session) for i in range(4)]
            for start in range(0, n, CHUNK):
                ids = np.arange(start + 1, min(start + CHUNK, n) + 1)
                files = [samples[(i - 1) % len(samples)] for i in ids]
                labels = [f.parent.name for f in files]
                ds = [datasets[int(i) % len(datasets)] for i in ids]
                hashes = [f"bench-{int(i):09d}" for i in ids]
                session.execute(
                    insert(Image),
                    [
                        {
                            "id": int(i),
                            "dataset_id": d.id,
                            "content_hash": h,
                            "source_path": str(f),
                            "label": lab,
                            "width": 150,
                            "height": 150,
                            "status": "done",
                        }  # fmt: skip
                        for i, d, h, f, lab in zip(ids, ds, hashes, files, labels, strict=True)
                    ],
                )
                centre_idx = np.array([LABELS.index(lab) for lab in labels])
                vecs = centres[centre_idx] + 1.2 * rng.normal(size=(len(ids), dim)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                pids = [point_id(h, version.name) for h in hashes]
                payloads = [
                    {
                        "image_id": int(i),
                        "dataset": d.name,
                        "dataset_id": d.id,
                        "label": lab,
                        "slide_id": None,
                        "content_hash": h,
                    }  # fmt: skip
                    for i, d, h, lab in zip(ids, ds, hashes, labels, strict=True)
                ]
                store.upsert(version.collection, pids, vecs, payloads)
                session.execute(
                    insert(Embedding),
                    [
                        {"image_id": int(i), "encoder_version_id": version.id, "point_id": p}
                        for i, p in zip(ids, pids, strict=True)
                    ],
                )
                session.commit()
                print(f"  stored {ids[-1]:,}/{n:,} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
            t1 = time.perf_counter()
            store.optimize(version.collection)
            print(f"  optimize (HNSW build): {time.perf_counter() - t1:.0f} s", file=sys.stderr)
    finally:
        store.close()
        engine.dispose()
    (home / "BENCH_READY").write_text(str(n))
    return {"build_s": time.perf_counter() - t0}


def _median_time(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def backend_timings(home: Path, repeat: int = 7) -> list[tuple[str, float, float]]:
    """(what, ours seconds, baseline seconds) measured in-process (no browser)."""
    import streamlit as st

    from dashboard import queries
    from dashboard.services import _services, settings_key
    from retrieval.api import Retrieval
    from retrieval.projection import load_or_compute
    from retrieval.settings import get_settings

    settings = get_settings(home=home)
    key = settings_key(settings)
    rows: list[tuple[str, float, float]] = []
    svc = _services(key)  # warm, as after the page has loaded once
    queries.top_k_by_id(key, "bench-r18", 1, 10, None, None, None, exclude_same_group=False)
    rng = np.random.default_rng(1)

    def ours() -> None:
        st.cache_data.clear()  # a new query: not a cached result
        queries.top_k_by_id(
            key, "bench-r18", int(rng.integers(1, 1000)), 10, None, None, None, exclude_same_group=False
        )

    ours_s = _median_time(ours, repeat)
    svc.store.close()  # the embedded store allows one opener: let the naive baseline open its own
    _services.clear()

    def naive() -> None:
        with Retrieval.from_settings(settings) as r:
            r.top_k(int(rng.integers(1, 1000)), k=10, exclude_self=False)

    naive_s = _median_time(naive, max(3, repeat // 2))
    rows.append(("top-10 search, backend (new query)", ours_s, naive_s))

    svc = _services(key)
    from retrieval.catalog import active_encoder_version

    with svc.session() as session:
        version = active_encoder_version(session=session)
        t = time.perf_counter()
        load_or_compute(version, "pca", home=home, session=session, store=svc.store, recompute=True)
        recompute_s = time.perf_counter() - t
        cached_s = _median_time(
            lambda: load_or_compute(version, "pca", home=home, session=session, store=svc.store), repeat
        )
        t = time.perf_counter()
        load_or_compute(version, "umap", home=home, session=session, store=svc.store, recompute=True)
        umap_s = time.perf_counter() - t
    rows.append(("PCA map of 5,000 sampled points (disk cache vs recompute)", cached_s, recompute_s))
    rows.append(("UMAP map of 5,000 sampled points (computed once)", umap_s, float("nan")))
    svc.store.close()
    _services.clear()
    return rows


def browser_timings(home: Path, searches: int = 5) -> dict[str, Any]:
    """Times in a real browser against ``streamlit run`` on the index."""
    from tests.support.dashboard_browser import chromium, streamlit_server

    pages = [("", "Search", "Top 10"), ("pair", "Pair", "Decision"), ("clusters", "Clusters", "stored vectors"),
             ("accuracy", "Accuracy", "ROC"), ("ingestion", "Ingestion", "Start an ingestion"),
             ("models", "Models", "Active encoder")]  # fmt: skip
    out: dict[str, Any] = {"first": {}, "second": {}, "search": [], "server": {}}
    log = home / "streamlit-bench.log"

    def server_times() -> list[float]:  # "page X ran in Y s" lines the app logs (the script run, server side)
        text = log.read_text(errors="replace") if log.exists() else ""
        return [float(line.rsplit(" ran in ", 1)[1].split()[0]) for line in text.splitlines() if " ran in " in line]

    env = {"HISTOQUERY_HOME": str(home)}
    with streamlit_server(env=env, timeout=180, log_path=log) as url, chromium() as browser:
        for visit in ("first", "second"):  # a new browser tab per page: loads the whole frontend each time
            for path, title, text in pages:
                page = browser.new_page()
                t = time.perf_counter()
                page.navigate(f"{url}/{path}")
                page.wait_rendered(title, text, timeout=600)
                page.wait_media(timeout=120)
                out[visit][title] = time.perf_counter() - t
                out["server"][(visit, title)] = server_times()[-1]
                errors = page.error_texts()
                page.close()  # one tab at a time: open tabs keep sessions (and CPU) busy
                print(f"  {visit} visit {title}: {out[visit][title]:.2f} s {errors or ''}", file=sys.stderr)
        # in-app navigation: one tab, click the sidebar link (what a user does after the first load)
        out["nav"] = {}
        page = browser.new_page()
        page.navigate(f"{url}/models")
        page.wait_rendered("Models", "Active encoder", timeout=300)
        for _path, title, text in pages:
            t = time.perf_counter()
            page.evaluate(
                "(() => { const a = Array.from(document.querySelectorAll('[data-testid=\"stSidebarNav\"] a'))"
                f".find(e => e.textContent.trim().endsWith({__import__('json').dumps(title)})); a.click(); }})()"
            )
            page.wait_rendered(title, text, timeout=300)
            page.wait_media(timeout=120)
            out["nav"][title] = time.perf_counter() - t
            out["server"][("nav", title)] = server_times()[-1]
            print(f"  sidebar navigation to {title}: {out['nav'][title]:.2f} s", file=sys.stderr)
        page.close()
        page = browser.new_page()
        page.navigate(url)
        page.wait_rendered("Search", "Top 10", timeout=300)
        page.wait_media(timeout=60)
        for i in range(searches):
            # widgets can hydrate a moment after the text: wait for the result buttons (not timed)
            page.wait_for(
                "Array.from(document.querySelectorAll('button'))"
                ".filter(e => e.innerText.trim() === 'Search with this').length >= 3",
                timeout=120,
            )
            old = page.body_text()
            t = time.perf_counter()
            page.evaluate(
                "(() => { const b = Array.from(document.querySelectorAll('button'))"
                f".filter(e => e.innerText.trim() === 'Search with this'); b[{i % 3}].click(); }})()"
            )
            page.wait_for(f"document.body.innerText !== {__import__('json').dumps(old)}", timeout=60)
            page.wait_rendered("Search", "Top 10", timeout=60)
            page.wait_media(timeout=60)
            out["search"].append(time.perf_counter() - t)
            out["server"][("search", i)] = server_times()[-1]
            print(f"  search {i + 1}: {out['search'][-1]:.2f} s", file=sys.stderr)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="stored vectors (default 100000)")
    parser.add_argument("--home", type=Path, default=Path("/tmp/hq-bench-dashboard"), help="index folder (reused)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the index even if it exists")
    parser.add_argument("--skip-browser", action="store_true", help="backend timings only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    ready = args.home / "BENCH_READY"
    build: dict[str, Any] = {}
    if args.rebuild or not ready.exists() or ready.read_text() != str(args.n):
        import shutil

        shutil.rmtree(args.home, ignore_errors=True)
        print(f"building an index of {args.n:,} vectors under {args.home} ...", file=sys.stderr)
        build = build_index(args.home, args.n)
    for proj in (args.home / "projections").glob("*.npz"):
        proj.unlink()  # the browser's first Clusters visit computes the map; later visits use the cache
    backend = backend_timings(args.home)
    browser = None if args.skip_browser else browser_timings(args.home)

    import streamlit
    import torch

    print("\n## Dashboard (bench_dashboard.py)\n")
    print("Command: `.venv/bin/python benchmarks/bench_dashboard.py " + " ".join(sys.argv[1:]) + "`  ")
    load = __import__("os").getloadavg()
    print(f"Machine: {platform.machine()}, {__import__('os').cpu_count()} CPU cores (2-core CPU shared with other "
          f"jobs: load average {load[0]:.1f} at the end of the run), no GPU  ")  # fmt: skip
    print(f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()}, "
          f"streamlit {streamlit.__version__}, torch {torch.__version__}, Chromium headless  ")  # fmt: skip
    print(f"Index: {args.n:,} synthetic 512-d unit vectors inserted directly into embedded Qdrant (qdrant-edge) + "
          "SQLite rows (not ingested); source files cycle through the shipped sample."
          + (f" Build: {build['build_s']:.0f} s." if build else ""))  # fmt: skip
    print("\n| backend (in-process, median) | ours (s) | baseline (s) | baseline / ours |\n|---|---:|---:|---:|")
    for what, ours, base in backend:
        ratio = f"{base / ours:.1f}x" if np.isfinite(base) and ours > 0 else "-"
        base_s = f"{base:.3f}" if np.isfinite(base) else "-"
        print(f"| {what} | {ours:.3f} | {base_s} | {ratio} |")
    print("\nBaselines: a naive dashboard that opens `Retrieval.from_settings` (database + vector store) per request; "
          "recomputing the projection on every rerun.")  # fmt: skip
    if browser:
        srv = browser["server"]
        print("\n| page: real browser, until rendered incl. images/charts (server script run) | first visit, "
              "cold server, new tab (s) | second visit, new tab (s) | sidebar navigation after the first load (s) "
              "| target (s) |\n|---|---:|---:|---:|---:|")  # fmt: skip
        for title, first in browser["first"].items():
            target = {"Clusters": "3 (cached projection)"}.get(title, "-")
            print(f"| {title} | {first:.2f} ({srv[('first', title)]:.2f}) | {browser['second'][title]:.2f} "
                  f"({srv[('second', title)]:.2f}) | {browser['nav'][title]:.2f} ({srv[('nav', title)]:.2f}) "
                  f"| {target} |")  # fmt: skip
        s = browser["search"]
        ss = [srv[("search", i)] for i in range(len(s))]
        print(f"| Search: a new query after the page has loaded (click 'Search with this'; median of {len(s)}) | - | "
              f"{statistics.median(s):.2f} (max {max(s):.2f}) ({statistics.median(ss):.2f}) | - | 1 |")  # fmt: skip
        print("\nAll browser rows of Clusters use the PCA projection file written by the backend step (the disk "
              "cache); its computation time is the backend table's recompute row. A new tab loads the whole Streamlit "
              "frontend (and Plotly) again; sidebar navigation does not. First visits include opening the store and "
              "Python imports in the server.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
