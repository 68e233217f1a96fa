"""Memory on hostile files: RSS over the loaded model while ingesting a folder of files built to exhaust memory.

    .venv/bin/python benchmarks/bench_hostile.py                 # 2 x 13000^2 1-bit PNG, 2 x 2 GB fake .png, ...
    .venv/bin/python benchmarks/bench_hostile.py --threads 16    # the decode phase with 16 decode threads

Phase 1 (ingest): a folder with 16 good H&E images, two 20 KB 13000x13000 1-bit PNGs (2.7 GB RSS each before
the fix), two sparse 2 GB files named ``.png`` (read whole before the fix), a 100000^2 header bomb, and
``--large`` 6000x6000 RGB PNGs (decodable, within the budget one at a time), ingested in embedded mode with an
untrained resnet18 at 64 px. Phase 2 (threads): ``--large`` files decoded with ``--threads`` threads sharing the
process's decode memory budget (``ingest.decode.model_input``). RSS is sampled every 20 ms from /proc; the
table prints its peak over the RSS measured after the encoder was loaded, and every file's reason.

Target (issue #12): under 1 GB over the model, a clear reason per hostile file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples RSS on a thread; ``peak`` is the highest value seen while running."""

    def __init__(self, every_s: float = 0.02) -> None:
        self.every_s, self.peak, self._stop = every_s, rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def make_inputs(folder: Path, large: int) -> None:
    """Write the hostile folder (run in a child process so its allocations do not count)."""
    from PIL import Image

    from tests.support.ingest_inputs import (
        he_image,
        write_bilevel_png,
        write_png_header_only,
        write_sparse_fake_image,
    )

    folder.mkdir(parents=True)
    for i in range(16):
        he_image(96, i).save(folder / f"good_{i:02d}.png")
    write_bilevel_png(folder / "bilevel_13000_a.png", 13_000)
    write_bilevel_png(folder / "bilevel_13000_b.png", 13_000)
    write_sparse_fake_image(folder / "fake_2gb_a.png", 2 * 1024**3, tag=b"a")  # distinct contents: both decoded
    write_sparse_fake_image(folder / "fake_2gb_b.png", 2 * 1024**3, tag=b"b")
    write_png_header_only(folder / "header_bomb.png", 100_000, 100_000)
    (folder.parent / "large").mkdir()
    for i in range(large):
        Image.new("RGB", (6000, 6000), (200 - i, 120, 180)).save(folder.parent / "large" / f"rgb_6000_{i}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=16, help="decode threads in phase 2")
    parser.add_argument("--large", type=int, default=16, help="6000x6000 RGB PNGs (decodable, 324 MiB estimate each)")
    parser.add_argument("--budget-mb", type=int, default=512, help="HISTOQUERY_DECODE_MEMORY_MB")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from ingest.decode import model_input
    from ingest.errors import BadImageError
    from ingest.service import job_status, submit_ingest
    from retrieval.settings import get_settings
    from tests.ingest.conftest import register_active
    from training.encoder import Encoder
    from training.pixels import process_budget
    from training.testing import make_untrained_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        folder = tmp_path / "hostile"
        child = multiprocessing.get_context("spawn").Process(target=make_inputs, args=(folder, args.large))
        child.start()
        child.join()
        ckpt = make_untrained_checkpoint(tmp_path / "tiny.pt", backbone="resnet18", image_size=64)
        settings = get_settings(home=tmp_path / "home", broker_url=None, decode_memory_mb=args.budget_mb)
        register_active(settings, ckpt)
        # warm up: load the encoder and open the stores once (one good image), then measure from there
        submit_ingest([folder / "good_00.png"], settings=settings, dataset="warm")
        base = rss_bytes()
        t0 = time.perf_counter()
        with PeakRss() as ingest_peak:
            job = submit_ingest([folder], settings=settings, dataset="hostile")
        ingest_s = time.perf_counter() - t0
        status = job_status(job, settings=settings, max_failures=1000)

        encoder = Encoder.from_checkpoint(ckpt, device="cpu")
        budget = process_budget(args.budget_mb * 1024 * 1024)
        large = sorted((tmp_path / "large").glob("*.png"))
        ok, refused = 0, []
        base2 = rss_bytes()
        t1 = time.perf_counter()
        with PeakRss() as thread_peak, ThreadPoolExecutor(args.threads) as pool:

            def one(path: Path) -> str | None:
                try:
                    model_input(path, encoder.preprocess, budget=budget)
                    return None
                except BadImageError as exc:
                    return f"{path.name}: {exc.reason}"

            for res in pool.map(one, large):
                if res is None:
                    ok += 1
                else:
                    refused.append(res)
        threads_s = time.perf_counter() - t1

    mib = 1024 * 1024
    print(f"command : {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine : {platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} "
          f"torch threads; date {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")  # fmt: skip
    print(
        f"versions: python {platform.python_version()}, torch {torch.__version__}, decode budget {args.budget_mb} MiB"
    )
    print()
    print("| phase | files | result | RSS after model | peak RSS | peak over model | wall |")
    print("|---|---|---|---|---|---|---|")
    print(f"| ingest folder (embedded, default decode threads) | {status.total} | {status.done} stored, "
          f"{status.failed} failed, {status.skipped} skipped | {base / mib:.0f} MiB | {ingest_peak.peak / mib:.0f} MiB "
          f"| **{(ingest_peak.peak - base) / mib:.0f} MiB** | {ingest_s:.1f} s |")  # fmt: skip
    print(f"| {len(large)} x 6000^2 RGB on {args.threads} decode threads | {len(large)} | {ok} decoded, "
          f"{len(refused)} refused | {base2 / mib:.0f} MiB | {thread_peak.peak / mib:.0f} MiB "
          f"| **{(thread_peak.peak - base2) / mib:.0f} MiB** | {threads_s:.1f} s |")  # fmt: skip
    print()
    print("Per-file reasons (ingest):")
    for f in status.failures:
        print(f"  [{f.stage}] {Path(f.source).name}: {f.reason}")
    for r in refused:
        print(f"  [threads] {r}")


if __name__ == "__main__":
    main()
