"""Sustained ingestion through Celery workers while queries run, with faults; then exactly-once checks.

    .venv/bin/python benchmarks/bench_load.py --images 20000 --workers 2   # the issue's size
    .venv/bin/python benchmarks/bench_load.py --images 2000 --faults       # reduced; worker kill + broker restart

What it does, on one machine, with throwaway PostgreSQL and Redis (append-only, as a production broker must be):

1. builds N distinct real images (LC25000 lung JPEGs from ../shared/data and their 8 dihedral variants, re-encoded:
   every file has its own content hash), cached under --cache;
2. registers an encoder (a random-init resnet18 64 px by default: throughput of the platform, not of a backbone),
   starts --workers `histoquery worker` processes and ingests a base set (--base images);
3. idle: top-10 queries for --idle-s seconds; load: submits the N images as one job and keeps querying at the same
   rate until the job finishes; with --faults, SIGKILLs one worker at 30 % (a new one is started) and restarts
   Redis at 60 %;
4. checks the result with the retrieval doctor (SQL rows vs vector points per encoder version), distinct content
   hashes, and the job's counters: nothing lost, nothing duplicated.

Vectors: with --qdrant-url the Qdrant server (the intended deployment). Without it, the embedded engine under the
run's home, which one process may hold at a time: workers open it per batch under ingest's writer lock, and the
query loop takes the same lock for each burst of queries. The table then separates search time (the store's own
latency under CPU contention) from lock wait (time queued behind a worker's write), and says which backend ran.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data" / "lc25000_lung"


# --------------------------------------------------------------------------------------------------- data set
def build_images(source: Path, n: int, cache: Path) -> Path:
    """``cache/<class>/*.jpg``: n distinct JPEGs (8 dihedral variants of each source image), built once."""
    from PIL import Image

    out = cache / f"lc25000-x8-{n}"
    done = out / ".complete"
    if done.exists():
        return out
    files = sorted(p for p in source.rglob("*.jp*g"))
    if not files:
        raise SystemExit(f"no JPEGs under {source}: pass --source")
    ops = [None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_90,
           Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
           Image.Transpose.TRANSVERSE]  # fmt: skip
    if n > len(files) * len(ops):
        raise SystemExit(f"--images {n}: at most {len(files) * len(ops)} distinct variants of {source}")
    shutil.rmtree(out, ignore_errors=True)
    print(f"building {n} images from {source} into {out} ...", flush=True)
    count = 0
    for v, op in enumerate(ops):
        for f in files:
            if count >= n:
                break
            with Image.open(f) as im:
                img = im.convert("RGB") if op is None else im.convert("RGB").transpose(op)
                target = out / f.parent.name / f"{f.stem}_v{v}.jpg"
                target.parent.mkdir(parents=True, exist_ok=True)
                img.save(target, quality=90)
            count += 1
    done.write_text(str(count))
    return out


# --------------------------------------------------------------------------------------------------- queries
class QueryLoop:
    """Top-10 queries by stored image id at a fixed rate, in bursts, recording search time and lock wait."""

    def __init__(self, settings: Any, image_ids: list[int], rate: float, burst: int = 5) -> None:
        self.settings, self.image_ids, self.rate, self.burst = settings, image_ids, rate, burst
        self.search_ms: list[float] = []
        self.wait_ms: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def _store(self) -> Iterator[Any]:
        from retrieval.store import open_vector_store

        if self.settings.vector_backend == "server":
            with contextlib.closing(open_vector_store(self.settings)) as store:
                yield store
            return
        lock = Path(self.settings.qdrant_path) / ".histoquery-writer.lock"  # the lock ingest.context uses
        with lock.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                with contextlib.closing(open_vector_store(self.settings)) as store:
                    yield store
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _run(self) -> None:
        from retrieval.api import Retrieval
        from retrieval.db import engine_for, session_factory

        engine = engine_for(self.settings.db_url)
        sessions = session_factory(engine)
        rng = random.Random(0)
        period = self.burst / self.rate
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                with self._store() as store, sessions() as session:
                    t_open = time.perf_counter()
                    retrieval = Retrieval(session=session, store=store)
                    for _ in range(self.burst):
                        q = rng.choice(self.image_ids)
                        t = time.perf_counter()
                        retrieval.top_k(q, k=10)
                        self.search_ms.append((time.perf_counter() - t) * 1e3)
                    self.wait_ms.append((t_open - t0) * 1e3)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the load goes on
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(max(0.0, period - (time.perf_counter() - t0)))

    def __enter__(self) -> QueryLoop:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(120)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# --------------------------------------------------------------------------------------------------- the run
def run(args: argparse.Namespace) -> dict[str, Any]:
    from ingest.service import job_status, submit_ingest, wait_for_job
    from retrieval.settings import get_settings
    from tests.support.ingest_cluster import PersistentRedis, Worker, histoquery_env
    from tests.support.services import postgres_server
    from training.testing import make_untrained_checkpoint

    images = build_images(args.source, args.images + args.base, args.cache)
    files = sorted(p for p in images.rglob("*.jpg"))
    base_files, load_files = files[: args.base], files[args.base : args.base + args.images]
    home = Path(tempfile.mkdtemp(prefix="hq-load-"))
    lists = home / "lists"
    lists.mkdir()
    result: dict[str, Any] = {"backend": "server " + args.qdrant_url if args.qdrant_url else "embedded (shared lock)"}
    with postgres_server() as pg, contextlib.ExitStack() as stack:
        redis = PersistentRedis()
        redis.start()
        stack.callback(redis.stop)
        env = {
            "HISTOQUERY_HOME": str(home),
            "HISTOQUERY_DATABASE_URL": pg.create_database("hq_load"),
            "HISTOQUERY_BROKER_URL": redis.url,
            "HISTOQUERY_RESULT_BACKEND": redis.url.rsplit("/", 1)[0] + "/1",
            "HISTOQUERY_INGEST_BATCH_SIZE": str(args.batch_size),
            "HISTOQUERY_DEVICE": args.device,
            # A SIGKILLed worker's batch is re-delivered after the visibility timeout: keep it a few batches long.
            "HISTOQUERY_TASK_VISIBILITY_TIMEOUT_S": str(args.visibility_timeout),
        }
        if args.qdrant_url:
            env.update({"HISTOQUERY_VECTOR_BACKEND": "server", "HISTOQUERY_QDRANT_URL": args.qdrant_url})
        settings = get_settings(**{k.removeprefix("HISTOQUERY_").lower(): v for k, v in env.items()})
        checkpoint = args.checkpoint or make_untrained_checkpoint(home / "encoder.pt")
        proc_env = histoquery_env(env)
        import subprocess

        subprocess.run([sys.executable, "-m", "cli.main", "reembed", "--checkpoint", str(checkpoint), "--name",
                        "load", "--wait"], env=proc_env, cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        workers = [Worker(proc_env, home / f"worker{i}.log", args.concurrency).start() for i in range(args.workers)]
        stack.callback(lambda: [w.stop() for w in workers])
        for w in workers:
            w.wait_ready()

        def ingest(paths: list[Path], name: str) -> int:
            manifest = lists / f"{name}.csv"
            manifest.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in paths))
            return submit_ingest([], settings=settings, dataset=name, manifest=manifest)

        t = time.perf_counter()
        base_job = wait_for_job(ingest(base_files, "base"), settings=settings)
        result["base"] = {"images": base_job.done, "seconds": time.perf_counter() - t}
        ids = _stored_ids(settings)
        with QueryLoop(settings, ids, args.query_rate) as idle:
            time.sleep(args.idle_s)
        t = time.perf_counter()
        faults: list[str] = []
        with QueryLoop(settings, ids, args.query_rate) as loaded:
            job_id = ingest(load_files, "load")

            def on_progress(status: Any) -> None:
                frac = status.processed / max(1, status.total)
                if args.faults and frac >= 0.3 and not any(f.startswith("worker") for f in faults):
                    workers[0].kill()
                    faults.append(f"worker SIGKILL at {status.processed}/{status.total}")
                    workers.append(Worker(proc_env, home / "worker-replacement.log", args.concurrency).start())
                if args.faults and frac >= 0.6 and not any(f.startswith("broker") for f in faults):
                    redis.stop()
                    time.sleep(args.outage_s)
                    redis.start()
                    faults.append(f"broker restart ({args.outage_s:.0f}s down) at {status.processed}/{status.total}")

            final = wait_for_job(job_id, settings=settings, progress=on_progress, timeout_s=args.timeout)
        seconds = time.perf_counter() - t
        result.update(
            job={"status": final.status, "total": final.total, "done": final.done, "skipped": final.skipped,
                 "failed": final.failed, "seconds": seconds, "images_per_s": final.done / seconds},
            faults=faults, idle=_stats(idle), loaded=_stats(loaded), checks=_checks(settings),
        )  # fmt: skip
        result["job_status"] = job_status(job_id, settings=settings).status
        result["expected"] = _expected(base_files, load_files)
    shutil.rmtree(home, ignore_errors=True)
    return result


def _expected(base_files: list[Path], load_files: list[Path]) -> dict[str, int]:
    """What exactly-once means for these inputs: one row per distinct content hash per dataset.

    LC25000 itself holds flipped/rotated copies of its source tiles, so a few dihedral variants are byte-identical
    to other files: ingestion must skip them (same content in the same dataset), and store content present in both
    datasets once in each.
    """
    from ingest.decode import file_hash

    base = {file_hash(p) for p in base_files}
    load = {file_hash(p) for p in load_files}
    return {"rows": len(base) + len(load), "distinct": len(base | load), "load_duplicates": len(load_files) - len(load)}


def _stored_ids(settings: Any) -> list[int]:
    from sqlalchemy import select

    from retrieval.db import engine_for, session_factory
    from retrieval.models import Image

    engine = engine_for(settings.db_url)
    with session_factory(engine)() as session:
        ids = [int(i) for i in session.scalars(select(Image.id).where(Image.status == "done")).all()]
    return ids


def _stats(loop: QueryLoop) -> dict[str, Any]:
    return {
        "queries": len(loop.search_ms),
        "p50_ms": pct(loop.search_ms, 50),
        "p95_ms": pct(loop.search_ms, 95),
        "wait_p95_ms": pct(loop.wait_ms, 95),
        "errors": len(loop.errors),
        "first_error": loop.errors[:1],
    }


def _checks(settings: Any) -> dict[str, Any]:
    """Doctor (SQL rows vs vector points), distinct content hashes, images not done."""
    from sqlalchemy import func, select

    from retrieval.db import engine_for, session_factory
    from retrieval.doctor import check
    from retrieval.models import Image
    from retrieval.store import open_vector_store

    engine = engine_for(settings.db_url)
    with session_factory(engine)() as session, contextlib.closing(open_vector_store(settings)) as store:
        (report,) = [r for r in check(session=session, store=store) if r.version == "load"]
        rows = session.scalar(select(func.count()).select_from(Image)) or 0
        hashes = session.scalar(select(func.count(func.distinct(Image.content_hash)))) or 0
        not_done = session.scalar(select(func.count()).select_from(Image).where(Image.status != "done")) or 0
    return {"sql_embeddings": report.sql_count, "vector_points": report.store_count, "doctor_ok": report.ok,
            "missing": len(report.missing_image_ids), "orphans": len(report.orphan_point_ids),
            "image_rows": int(rows), "distinct_hashes": int(hashes), "not_done": int(not_done)}  # fmt: skip


# --------------------------------------------------------------------------------------------------- output
def render(args: argparse.Namespace, r: dict[str, Any]) -> str:
    import torch

    idle, load, job, c, e = r["idle"], r["loaded"], r["job"], r["checks"], r["expected"]
    lines = [
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores; device {args.device}",
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}; python {platform.python_version()}, "
        f"torch {torch.__version__}; vectors: {r['backend']}; workers {args.workers} x concurrency {args.concurrency}, "
        f"batch {args.batch_size}",
        "",
        "| top-10 query (by stored id) | queries | p50 ms | p95 ms | lock wait p95 ms | errors |",
        "|---|---|---|---|---|---|",
        f"| idle | {idle['queries']} | {idle['p50_ms']:.2f} | {idle['p95_ms']:.2f} | {idle['wait_p95_ms']:.1f} "
        f"| {idle['errors']} |",
        f"| during ingestion | {load['queries']} | {load['p50_ms']:.2f} | {load['p95_ms']:.2f} | "
        f"{load['wait_p95_ms']:.1f} | {load['errors']} |",
        f"| ratio (ingesting / idle) | | {load['p50_ms'] / idle['p50_ms']:.2f}x "
        f"| {load['p95_ms'] / idle['p95_ms']:.2f}x | | |",
        "",
        f"ingestion: {job['done']} stored + {job['skipped']} skipped + {job['failed']} failed of {job['total']} in "
        f"{job['seconds']:.1f}s = {job['images_per_s']:.1f} images/s; job {job['status']}",
        f"faults: {'; '.join(r['faults']) or 'none'}",
        f"exactly once: {args.base + args.images} files = {e['rows']} distinct (dataset, content) + "
        f"{e['load_duplicates']} byte-identical duplicates (must be skipped); image rows {c['image_rows']} "
        f"(expected {e['rows']}), distinct content hashes {c['distinct_hashes']} (expected {e['distinct']}), "
        f"SQL embeddings {c['sql_embeddings']}, vector points {c['vector_points']}, "
        f"doctor {'OK' if c['doctor_ok'] else 'DRIFT'} (missing {c['missing']}, orphans {c['orphans']}), "
        f"not done {c['not_done']}",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--images", type=int, default=20000, help="images ingested under load")
    p.add_argument("--base", type=int, default=500, help="images stored before the load (the queries' targets)")
    p.add_argument("--source", type=Path, default=SHARED)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hq-bench-load")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--query-rate", type=float, default=10.0, help="queries per second")
    p.add_argument("--idle-s", type=float, default=10.0)
    p.add_argument("--faults", action="store_true", help="kill a worker at 30%% and restart Redis at 60%%")
    p.add_argument("--outage-s", type=float, default=5.0)
    p.add_argument("--visibility-timeout", type=int, default=60, help="broker re-delivery delay of unacked batches")
    p.add_argument("--checkpoint", type=Path, default=None, help="encoder checkpoint (default random resnet18 64px)")
    p.add_argument("--device", default="cpu", help="worker device: cpu | cuda")
    p.add_argument("--qdrant-url", default=None, help="a Qdrant server (default: the embedded store)")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--out", type=Path, default=None, help="append the markdown section to this file")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the servers and workers are stopped on kill
    result = run(args)
    text = render(args, result)
    print(text)
    if args.out:
        with args.out.open("a") as fh:
            fh.write(f"\n### bench_load: {args.images} images, {args.workers} workers"
                     f"{', faults' if args.faults else ''}\n\n{text}\n")  # fmt: skip
    c, e = result["checks"], result["expected"]
    ok = (
        c["doctor_ok"]
        and c["image_rows"] == c["sql_embeddings"] == c["vector_points"] == e["rows"]
        and c["distinct_hashes"] == e["distinct"]
        and result["job"]["skipped"] == e["load_duplicates"]
        and c["not_done"] == 0
    )
    return 0 if ok and result["job"]["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
