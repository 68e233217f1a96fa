"""Ingestion throughput: the full pipeline vs a naive sequential loop, plus where the time goes and slide tiling.

    .venv/bin/python benchmarks/bench_ingest.py --images 512            # CPU, resnet18, LC25000 lung JPEGs
    .venv/bin/python benchmarks/bench_ingest.py --device cuda --backbone resnext50_32x4d --images 20000

Ours: ``ingest.planning`` + ``ingest.runner.run_embedded`` (decode on a thread pool, overlapped with batched
embedding via ``Encoder.embed_uint8``, one SQL transaction + one Qdrant upsert per batch) into a fresh SQLite +
embedded Qdrant home. Baseline: for each file, decode it, embed it alone, insert its row and upsert its point.
Both use the same untrained checkpoint (weights do not change speed), the same files and the same machine.
The encoder is loaded before timing in both. Data: ../shared/data/lc25000_lung (224x224 JPEG) when present.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def files(n: int, lung: Path | None = None) -> list[Path]:
    lung = lung or DATA / "lc25000_lung"
    if not lung.exists():
        raise SystemExit(f"{lung} not found: this benchmark reads the shared LC25000 subset (or pass --data DIR)")
    found = sorted(lung.rglob("*.jpeg")) + sorted(lung.rglob("*.jpg"))
    # interleave the classes so any prefix is balanced
    by_class: dict[str, list[Path]] = {}
    for f in found:
        by_class.setdefault(f.parent.name, []).append(f)
    mixed = [f for group in zip(*by_class.values(), strict=False) for f in group]
    return mixed[:n]


def _variant(job: tuple[int, str, str]) -> str:
    """Write one unique 224x224 JPEG: a random crop (200-224 px) of a source tile, resized, flipped/rotated."""
    from PIL import Image

    i, src, out_dir = job
    rng = np.random.default_rng(i)
    with Image.open(src) as opened:
        img = opened.convert("RGB").resize((224, 224))
        side = int(rng.integers(200, 225))
        x, y = (int(v) for v in rng.integers(0, 224 - side + 1, size=2))
        img = img.crop((x, y, x + side, y + side)).resize((224, 224))
        img = img.rotate(90 * int(rng.integers(4)))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out = Path(out_dir) / Path(src).parent.name / f"v{i:06d}.jpeg"
        img.save(out, format="JPEG", quality=90)
    return str(out)


def synthesize(sources: list[Path], n: int, out_dir: Path) -> list[Path]:
    """``n`` unique 224 px JPEGs made from ``sources`` on all cores (so a small carried subset can feed a GPU run
    of tens of thousands of distinct images: identical files would be skipped by content hash)."""
    from concurrent.futures import ProcessPoolExecutor

    for cls in {p.parent.name for p in sources}:
        (out_dir / cls).mkdir(parents=True, exist_ok=True)
    jobs = [(i, str(sources[i % len(sources)]), str(out_dir)) for i in range(n)]
    with ProcessPoolExecutor() as pool:
        return [Path(p) for p in pool.map(_variant, jobs, chunksize=64)]


def make_settings(home: Path, batch: int, device: str):  # noqa: ANN201
    from retrieval.settings import get_settings

    return get_settings(home=home, broker_url=None, ingest_batch_size=batch, device=device)


def register(settings, ckpt: Path) -> None:  # noqa: ANN001
    from retrieval.catalog import register_encoder
    from retrieval.db import engine_for, migrate, session_factory
    from retrieval.store import open_vector_store

    migrate(settings.db_url)
    store = open_vector_store(settings)
    with session_factory(engine_for(settings.db_url))() as session:
        register_encoder(ckpt, session=session, store=store, name="bench", activate=True)
    store.close()


class _BatchTimes(logging.Handler):
    """Collects the per-batch phase times that ``ingest.pipeline.run_batch`` logs (INFO): where the time goes."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.phases = {"hash + skip check": 0.0, "decode + embed (overlapped)": 0.0, "SQL rows + vector upsert": 0.0}
        self.batches = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("job %d: %d embedded") and isinstance(record.args, tuple):
            times = [float(str(v)) for v in record.args[3:6]]  # (job, n, total, hash, decode+embed, store)
            for name, value in zip(self.phases, times, strict=True):
                self.phases[name] += value
            self.batches += 1


PHASES = _BatchTimes()


def run_ours(paths: list[Path], ckpt: Path, batch: int, device: str, threads: int | None) -> tuple[float, int]:
    from ingest.context import IngestContext
    from ingest.jobs import create_job
    from ingest.planning import plan_ingest
    from ingest.runner import run_embedded
    from retrieval.catalog import active_encoder_version, get_or_create_dataset

    home = Path(tempfile.mkdtemp(prefix="bench-ours-"))
    settings = make_settings(home, batch, device)
    register(settings, ckpt)
    ctx = IngestContext(settings, hold_store=True, decode_threads=threads)
    with ctx.sessions() as session:
        version = active_encoder_version(session=session)
        ctx.encoder(version)  # load before timing
        ds = get_or_create_dataset("bench", session=session)
        start = time.perf_counter()
        plan = plan_ingest(paths, session=session, dataset_id=ds.id, resolve_dataset=lambda n: ds.id,
                           batch_size=batch)  # fmt: skip
        job = create_job(session=session, kind="ingest", request={}, batches=len(plan.batches), total=plan.total,
                         dataset_id=ds.id, encoder_version_id=version.id)  # fmt: skip
    log = logging.getLogger("ingest.pipeline")
    log.addHandler(PHASES)
    log.setLevel(logging.INFO)
    status = run_embedded(ctx, job.id, plan.batches)
    log.removeHandler(PHASES)
    with ctx.store() as store:
        store.optimize(version.collection)
    elapsed = time.perf_counter() - start
    ctx.close()
    return elapsed, status.done


def run_naive(paths: list[Path], ckpt: Path, device: str) -> tuple[float, int]:
    import hashlib

    from sqlalchemy import select

    from ingest.decode import decode_bytes
    from retrieval.catalog import active_encoder_version, get_or_create_dataset, store_embeddings
    from retrieval.db import engine_for, session_factory
    from retrieval.models import Image
    from retrieval.store import open_vector_store
    from training.encoder import Encoder

    home = Path(tempfile.mkdtemp(prefix="bench-naive-"))
    settings = make_settings(home, 1, device)
    register(settings, ckpt)
    store = open_vector_store(settings)
    sessions = session_factory(engine_for(settings.db_url))
    with sessions() as session:
        version = active_encoder_version(session=session)
        encoder = Encoder.from_checkpoint(version.checkpoint_path, device=device)
        ds = get_or_create_dataset("bench", session=session)
        start = time.perf_counter()
        done = 0
        for path in paths:
            data = Path(path).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if session.scalar(select(Image.id).where(Image.dataset_id == ds.id, Image.content_hash == digest)):
                continue
            image = decode_bytes(data, path)
            vector = encoder.embed([image], batch_size=1)
            row = Image(dataset_id=ds.id, content_hash=digest, source_path=str(path), width=image.width,
                        height=image.height, status="pending")  # fmt: skip
            session.add(row)
            session.commit()
            store_embeddings([row], vector, version, session=session, store=store)
            done += 1
        store.optimize(version.collection)
        elapsed = time.perf_counter() - start
    store.close()
    return elapsed, done


def breakdown(paths: list[Path], ckpt: Path, device: str, batch: int, threads: int) -> dict[str, float]:
    """Stage ceilings in images/s: decode+preprocess (thread pool), embed only (batches), read bytes only."""
    from ingest.decode import decode_bytes
    from training.encoder import Encoder

    encoder = Encoder.from_checkpoint(ckpt, device=device)
    t = time.perf_counter()
    blobs = [Path(p).read_bytes() for p in paths]
    read_s = time.perf_counter() - t

    def prep(i: int) -> np.ndarray:
        return encoder.preprocess(decode_bytes(blobs[i], paths[i]))

    with ThreadPoolExecutor(threads) as pool:
        t = time.perf_counter()
        arrays = list(pool.map(prep, range(len(paths))))
        decode_s = time.perf_counter() - t
    stack = np.stack(arrays)
    encoder.embed_uint8(stack[:batch])  # warm-up
    t = time.perf_counter()
    for i in range(0, len(stack), batch):
        encoder.embed_uint8(stack[i : i + batch])
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    embed_s = time.perf_counter() - t
    n = len(paths)
    upsert_s = _upsert_seconds(n, encoder.dim, batch)
    return {"read": n / read_s, "decode+preprocess": n / decode_s, "embed": n / embed_s, "vector upsert": n / upsert_s}


def _upsert_seconds(n: int, dim: int, batch: int) -> float:
    """Seconds to upsert n random unit vectors into a fresh embedded collection, ``batch`` per call."""
    import uuid

    from retrieval.store.edge import EdgeVectorStore

    store = EdgeVectorStore(Path(tempfile.mkdtemp(prefix="bench-upsert-")))
    store.ensure_collection("bench", dim)
    vectors = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    t = time.perf_counter()
    for i in range(0, n, batch):
        payloads = [{"image_id": j, "dataset": "bench"} for j in range(i, min(i + batch, n))]
        store.upsert("bench", ids[i : i + batch], vectors[i : i + batch], payloads)
    store.optimize("bench")
    elapsed = time.perf_counter() - t
    store.close()
    return elapsed


def _read(reader: object, s: object) -> object:
    from ingest.slides import read_region_rgb

    return read_region_rgb(reader, s.level, s.x, s.y, s.size, 224)  # type: ignore[attr-defined]


def bench_slides(threads: int) -> list[tuple[str, int, float, float, float]]:
    """(slide, tiles, plan s, tiles/s sequential, tiles/s threaded) for each shared .svs slide (224 px, native)."""
    from ingest.slides import open_slide, plan_tiles, read_region_rgb

    out = []
    for path in sorted((DATA / "slides").glob("*.svs")):
        reader = open_slide(path)
        t = time.perf_counter()
        plan = plan_tiles(reader, path, tile_size=224, min_tissue=0.5)
        plan_s = time.perf_counter() - t
        tiles = plan.tiles
        t = time.perf_counter()
        for tile in tiles:
            read_region_rgb(reader, tile.level, tile.x, tile.y, tile.size, 224)
        seq = len(tiles) / (time.perf_counter() - t)
        with ThreadPoolExecutor(threads) as pool:
            t = time.perf_counter()
            list(pool.map(partial(_read, reader), tiles))
            par = len(tiles) / (time.perf_counter() - t)
        out.append((path.name, len(tiles), plan_s, seq, par))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="decode threads (default: cores, min 2)")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--data", type=Path, default=None, help="folder of JPEGs (default ../shared/data/lc25000_lung)")
    ap.add_argument("--synth", type=int, default=0,
                    help="first make this many unique 224 px JPEG variants of the --data files (untimed)")  # fmt: skip
    args = ap.parse_args()

    import torch

    from ingest.context import default_decode_threads
    from training.testing import make_untrained_checkpoint

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("not measured: no GPU lent to this session (--device cuda needs CUDA)")
        return
    threads = args.threads or default_decode_threads()
    paths = files(args.images, args.data)
    if args.synth:
        t = time.perf_counter()
        paths = synthesize(paths, args.synth, Path(tempfile.mkdtemp(prefix="bench-synth-")))
        print(f"synthesized {len(paths)} unique JPEGs in {time.perf_counter() - t:.1f} s (not timed below)")
    ckpt = make_untrained_checkpoint(Path(tempfile.mkdtemp()) / "bench.pt", args.backbone, args.image_size)
    print(f"command : {' '.join(sys.argv)}")
    print(f"machine : {platform.node()} {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"{threads} decode threads, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))  # fmt: skip
    print(f"date    : {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}")
    print(f"data    : {len(paths)} LC25000 lung 224x224 JPEGs from {args.data or DATA / 'lc25000_lung'}"
          f"{' (unique variants)' if args.synth else ''}; "
          f"{args.backbone} @ {args.image_size}px, batch {args.batch}")  # fmt: skip
    ours_s, ours_n = run_ours(paths, ckpt, args.batch, args.device, threads)
    ours = ours_n / ours_s
    print("\n| pipeline | images | seconds | images/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    if not args.skip_naive:
        naive_s, naive_n = run_naive(paths, ckpt, args.device)
        naive = naive_n / naive_s
        print(f"| naive loop (decode one, embed one, upsert one) | {naive_n} | {naive_s:.1f} | {naive:.1f} | 1.00 |")
        print(
            f"| HistoQuery pipeline (threads + batches) | {ours_n} | {ours_s:.1f} | {ours:.1f} | {ours / naive:.2f} |"
        )
    else:
        print(f"| HistoQuery pipeline (threads + batches) | {ours_n} | {ours_s:.1f} | {ours:.1f} | - |")
    stages = breakdown(paths, ckpt, args.device, args.batch, threads)
    print("\n| stage ceiling (alone) | images/s |")
    print("|---|---:|")
    for name, value in stages.items():
        print(f"| {name} | {value:.1f} |")
    print(f"| full pipeline / embed-only ceiling | {ours / stages['embed']:.2f} |")
    total = sum(PHASES.phases.values()) or 1.0
    head = f"inside the pipeline ({PHASES.batches} batches; phase times summed, two batches overlap)"
    print(f"\n| {head} | seconds | share |")
    print("|---|---:|---:|")
    for name, value in PHASES.phases.items():
        print(f"| {name} | {value:.2f} | {value / total:.0%} |")
    print("\n| slide (224 px tiles, native mpp, >= 50% tissue) | tiles | plan s | tiles/s 1 thread "
          f"| tiles/s {threads} threads |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for name, n, plan_s, seq, par in bench_slides(threads):
        print(f"| {name} | {n} | {plan_s:.2f} | {seq:.0f} | {par:.0f} |")


if __name__ == "__main__":
    main()
