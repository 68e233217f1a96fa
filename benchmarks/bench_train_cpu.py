"""CPU benchmark: wall time of the ``fast-cpu`` preset on the shipped sample, and augmentation throughput of our
batched tensor views vs the per-image PIL pipeline (torchvision v1 transforms, as the study used).

    .venv/bin/python benchmarks/bench_train_cpu.py [--skip-train] [--aug-images 64] [--aug-size 224]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_common import header, pil_byol_transforms, table  # noqa: E402

from training.augment import byol_views  # noqa: E402
from training.encoder import Encoder  # noqa: E402
from training.preprocess import resize_center_crop  # noqa: E402
from training.probe import Probe  # noqa: E402
from training.testing import make_untrained_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "kather2016"


def probe_quality(checkpoint: Path) -> dict[str, float]:
    """Pair accuracy / AUC / kNN on the shipped sample's 8 classes (the training images themselves: a sanity
    check that training moved the encoder, not a held-out quality number)."""
    enc = Encoder.from_checkpoint(checkpoint, "cpu")
    return Probe.from_path(SAMPLE, enc.image_size, n_pairs=1000).evaluate(enc.embed_uint8)


def bench_train() -> tuple[float, float, str, dict[str, float], dict[str, float]]:
    """Run the CLI exactly as a user would; returns (wall s, CPU s of the process, its output, probe trained,
    probe untrained)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(ROOT / ".venv" / "bin" / "histoquery"), "train", str(SAMPLE), "--preset", "fast-cpu",
               "--out", f"{tmp}/fast.pt", "--no-progress", "--device", "cpu"]  # fmt: skip
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        trained = probe_quality(Path(tmp) / "fast.pt")
        untrained = probe_quality(make_untrained_checkpoint(Path(tmp) / "untrained.pt", "resnet18", 64))
        return wall, cpu, "\n".join(proc.stdout.strip().splitlines()[:8]), trained, untrained


def bench_aug(n: int, size: int, threads: int) -> tuple[float, float]:
    """Images/s (both views per image) of ours (batched tensors) and the PIL pipeline, on ``threads`` CPU threads."""
    torch.set_num_threads(threads)
    files = sorted(p for p in SAMPLE.rglob("*") if p.is_file())
    pil = [Image.open(files[i % len(files)]).convert("RGB").resize((size, size)) for i in range(n)]
    batch = torch.from_numpy(np.stack([resize_center_crop(im, size) for im in pil]))
    v1, v2 = byol_views(size)
    g = torch.Generator().manual_seed(0)
    v1(batch[:8], g), v2(batch[:8], g)  # warm-up
    t0 = time.perf_counter()
    v1(batch, g), v2(batch, g)
    ours = n / (time.perf_counter() - t0)
    p1, p2 = pil_byol_transforms(size)
    t0 = time.perf_counter()
    for im in pil:
        p1(im), p2(im)
    base = n / (time.perf_counter() - t0)
    return ours, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--aug-images", type=int, default=64)
    parser.add_argument("--aug-size", type=int, default=224)
    args = parser.parse_args()
    print(header("Training on CPU (2-core CPU target)"))
    if not args.skip_train:
        wall, cpu, out, trained, untrained = bench_train()
        print(f"\nfast-cpu preset on samples/kather2016 (64 images, CLI process wall time incl. start-up)\n{out}\n")
        print(
            table(
                [["histoquery train --preset fast-cpu", f"{wall:.1f} s", f"{cpu:.1f} s", "180 s", f"{wall / 180:.2f}"]],
                ["run", "wall time", "CPU time (user+sys)", "target (wall)", "ratio to target (<= 1 passes)"],
            )
        )
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        print(f"load average after: {load} (other processes share the cores)")
        keys = ["probe_pair_acc", "probe_auc", "probe_knn_acc"]
        print("\nsanity probe on the 64 training images (8 classes, 1000 balanced pairs, 5-NN)")
        print(table([["fast-cpu trained", *(trained[k] for k in keys)],
                     ["resnet18 random init", *(untrained[k] for k in keys)]],
                    ["encoder", "pair accuracy", "ROC AUC", "kNN accuracy"]))  # fmt: skip
    ours, base = bench_aug(args.aug_images, args.aug_size, threads=1)
    print(f"\nBYOL augmentation, both views, {args.aug_size} px, {args.aug_images} images, 1 CPU thread")
    print(table([["ours: batched tensor ops (training.augment)", ours, ours / base],
                 ["baseline: per-image PIL (torchvision v1, 23 px blur)", base, 1.0]],
                ["pipeline", "images/s", "ratio"]))  # fmt: skip


if __name__ == "__main__":
    main()
