"""Retrieval quality of a trained encoder on LC25000 lung with a group split (the issue's protocol).

1. Split ``lc25000_lung`` by ``groups.csv`` group (``lc25000_clean_group``) into halves A and B, per class
   (LC25000 holds ~250 source tiles per class, each augmented many times: a file split would leak near-copies).
2. Train unlabeled on A (``--methods ours`` uses ``--preset``; ``paper`` runs the study's recipe).
3. Choose the best-accuracy cosine threshold on ``--threshold-pairs`` balanced same/different-class pairs from A.
4. Report accuracy at that threshold and ROC AUC on ``--eval-pairs`` balanced pairs from B, with the threshold in
   d = 2 - 2 cos (the study used d < 0.705).

Baselines: ``random`` (same backbone, random init) and ``histogram`` (joint 8x8x8 RGB colour histogram, cosine).

    .venv/bin/python benchmarks/gpu_quality.py --device cuda --methods histogram,random,ours,paper \
        --preset recommended --backbone resnext50_32x4d
    # CPU-feasible part (baselines on a subset):
    .venv/bin/python benchmarks/gpu_quality.py --device cpu --methods histogram,random --max-images 600 \
        --threshold-pairs 200 --eval-pairs 800
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_common import header, table  # noqa: E402

from training.encoder import Encoder  # noqa: E402
from training.presets import get_preset  # noqa: E402
from training.probe import balanced_pairs, best_threshold, roc_auc  # noqa: E402
from training.testing import make_untrained_checkpoint  # noqa: E402
from training.trainer import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "lc25000_lung"
EmbedFn = Callable[[list[Path]], np.ndarray]


def group_split(data: Path, seed: int, max_images: int | None) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Halves A and B of ``(path, label)``, split by group within each class; optional subsample keeps groups."""
    groups: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    with (data / "groups.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            groups[row["label"]][row["lc25000_clean_group"]].append(data / row["path"])
    rng = np.random.default_rng(seed)
    a: list[tuple[Path, str]] = []
    b: list[tuple[Path, str]] = []
    for label in sorted(groups):
        names = sorted(groups[label])
        rng.shuffle(names)
        half = len(names) // 2
        for i, g in enumerate(names):
            (a if i < half else b).extend((p, label) for p in sorted(groups[label][g]))
    if max_images:
        per_half = max_images // 2
        a = [a[i] for i in sorted(rng.choice(len(a), size=min(per_half, len(a)), replace=False))]
        b = [b[i] for i in sorted(rng.choice(len(b), size=min(per_half, len(b)), replace=False))]
    return a, b


def histogram_embed(files: list[Path]) -> np.ndarray:
    """Joint RGB histogram, 8 bins per channel (512-d), L2-normalised."""
    out = np.zeros((len(files), 512), dtype=np.float32)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8) // 32
        idx = arr[..., 0].astype(np.int64) * 64 + arr[..., 1] * 8 + arr[..., 2]
        out[i] = np.bincount(idx.ravel(), minlength=512)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def encoder_embed(encoder: Encoder, batch_size: int = 128) -> EmbedFn:
    def embed(files: list[Path]) -> np.ndarray:
        chunks = []
        for i in range(0, len(files), batch_size):
            ims = []
            for f in files[i : i + batch_size]:
                with Image.open(f) as im:
                    ims.append(encoder.preprocess(im))
            chunks.append(encoder.embed_uint8(np.stack(ims)))
        return np.concatenate(chunks)

    return embed


def evaluate(embed: EmbedFn, a: list[tuple[Path, str]], b: list[tuple[Path, str]], args: argparse.Namespace
             ) -> dict[str, float]:  # fmt: skip
    """Threshold on A's pairs, accuracy + AUC on B's pairs (only images in pairs are embedded)."""
    out: dict[str, float] = {}
    for name, half, n_pairs in (("A", a, args.threshold_pairs), ("B", b, args.eval_pairs)):
        labels = np.array([lab for _, lab in half])
        ia, ib, same = balanced_pairs(labels, n_pairs, seed=args.seed + (0 if name == "A" else 1))
        used = np.unique(np.concatenate([ia, ib]))
        emb = embed([half[i][0] for i in used])
        pos = {int(j): k for k, j in enumerate(used)}
        sims = np.array([emb[pos[int(x)]] @ emb[pos[int(y)]] for x, y in zip(ia, ib, strict=True)])
        if name == "A":
            _, thr = best_threshold(sims, same)
            out["threshold_cos"], out["threshold_d"] = thr, 2 - 2 * thr
        else:
            out["accuracy"] = float(np.mean((sims >= out["threshold_cos"]) == same))
            out["auc"] = roc_auc(sims, same)
    return out


def train_on(a: list[tuple[Path, str]], preset: str, args: argparse.Namespace, workdir: Path) -> tuple[Path, float]:
    """Train ``preset`` (backbone/epochs/batch overridable) on half A, unlabeled; returns (checkpoint, seconds)."""
    folder = workdir / f"A-{preset}"
    for path, _ in a:
        link = folder / path.parent.name / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(path.resolve())
    overrides: dict[str, object] = {"backbone": args.backbone, "device": args.device}
    for key in ("epochs", "batch_size", "image_size"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    config = get_preset(preset).with_overrides(overrides)
    out = workdir / f"{preset}.pt"
    t0 = time.perf_counter()
    train(folder, config, out)
    return out, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--device", default="cuda")
    p.add_argument("--methods", default="histogram,random,ours,paper")
    p.add_argument("--preset", default="recommended", help="preset for 'ours'")
    p.add_argument("--backbone", default="resnext50_32x4d")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--threshold-pairs", type=int, default=1000)
    p.add_argument("--eval-pairs", type=int, default=4000)
    p.add_argument("--max-images", type=int, help="subsample (CPU runs); default all 4,500")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, help="keep checkpoints here (default: a temp folder)")
    args = p.parse_args()
    print(header("Retrieval quality, LC25000 lung, group split"))
    a, b = group_split(args.data, args.seed, args.max_images)
    print(f"data: {args.data} (read from ../shared/data); half A {len(a)} images, half B {len(b)} images; "
          f"{args.threshold_pairs} threshold pairs from A, {args.eval_pairs} eval pairs from B")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for method in args.methods.split(","):
            seconds = 0.0
            if method == "histogram":
                embed: EmbedFn = histogram_embed
                what = "colour histogram (8x8x8 RGB)"
            elif method == "random":
                ck = make_untrained_checkpoint(workdir / "random.pt", backbone=args.backbone,
                                               image_size=args.image_size or 224, seed=args.seed)  # fmt: skip
                embed, what = encoder_embed(Encoder.from_checkpoint(ck, args.device)), f"{args.backbone} random init"
            elif method in ("ours", "paper"):
                preset = args.preset if method == "ours" else "paper"
                ck, seconds = train_on(a, preset, args, workdir)
                embed = encoder_embed(Encoder.from_checkpoint(ck, args.device))
                what = f"{args.backbone} BYOL, preset {preset}"
            else:
                raise SystemExit(f"unknown method {method!r}")
            t0 = time.perf_counter()
            m = evaluate(embed, a, b, args)
            rows.append([what, m["accuracy"], m["auc"], m["threshold_d"], f"{seconds:.0f} s",
                         f"{time.perf_counter() - t0:.0f} s"])  # fmt: skip
            print(table(rows[-1:], ["method", "accuracy (B)", "ROC AUC (B)", "threshold d", "train", "eval"]))
    print("\n" + table(rows, ["method", "accuracy (B)", "ROC AUC (B)", "threshold d = 2-2cos", "train", "eval"]))


if __name__ == "__main__":
    main()
