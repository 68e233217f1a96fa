"""Retrieval quality of a training recipe, measured the way a reviewer would, through the product's own path.

1. Read a labeled folder ``DATA/<label>/<image>`` and each image's group (patient, slide or source tile) from a CSV
   (``--groups``; by default ``DATA/groups.csv``) or from the file name (``--group-regex``, first capture group).
2. Split by group, never by file: within each label, a seeded share of the groups goes to the training side (A),
   the rest to the held-out side (B).
3. For each method, in one run and on the same split:
   - ``ours``: ``training.trainer.train`` on side A's images, unlabeled (copied flat, so no folder name leaks);
   - ``untrained``: the same recipe's untrained twin (same seed, backbone, input sizes and centring);
   - ``paper``: the study's recipe (``--preset paper``) on the same images with the same time budget;
   - ``histogram``: a joint 8x8x8 RGB colour histogram (cosine), the cheapest floor;
   then register the checkpoint as the active encoder version of a fresh embedded deployment, ingest A and B
   (``ingest.service.submit_ingest``, labels and groups from a manifest), calibrate the threshold on balanced
   pairs of A (``retrieval.evaluation.calibrate``) and report accuracy with its bootstrap 95 % CI, ROC AUC and
   kNN (majority vote of the 5 nearest) on balanced pairs / queries of B (``retrieval.evaluation.evaluate``).
4. The trained run records a held-out curve per epoch (``--probe-images`` of B, one per group, AUC and kNN
   accuracy), its wall time and images/s.

    .venv/bin/python benchmarks/quality.py --data ../shared/data/lc25000_lung --preset cpu-crops
    .venv/bin/python benchmarks/quality.py --data DIR --group-regex '_(CRC-[^_]+)_' --methods histogram,untrained,ours

Cross-set confirmation: ``--checkpoint untrained=A.pt --checkpoint ours=B.pt`` evaluates encoders trained on another
set (kept with ``--work``) on this one, without training; side A then only serves to calibrate the threshold.

Prints a markdown table and writes ``--json``. Performance and quality numbers belong in BENCHMARKS.md, never in
tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_quality import histogram_embed  # noqa: E402  (the joint 8x8x8 RGB histogram floor, one implementation)

from retrieval import metrics as M  # noqa: E402
from retrieval.pairgen import generate_pairs  # noqa: E402
from training.pixels import IMAGE_SUFFIXES  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "lc25000_lung"
SIDE_A, SIDE_B = "quality-train-side", "quality-held-out"


@dataclass(frozen=True)
class Item:
    """One labeled image and its group."""

    path: Path
    label: str
    group: str


# ---------------------------------------------------------------------------------------------- data and split
def load_items(data: Path, groups_csv: Path | None, group_column: str | None, group_regex: str | None) -> list[Item]:
    """Labeled images of ``data/<label>/...`` with their group; images without a group are an error."""
    files = sorted(
        p
        for p in data.glob("*/**/*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise SystemExit(f"error: no images in label sub-folders of {data} (expected DATA/<label>/<image>)")
    if group_regex:
        pattern = re.compile(group_regex)
        groups: dict[str, str] = {}
        for f in files:
            m = pattern.search(f.name)
            if m:
                groups[f.relative_to(data).as_posix()] = m.group(1) if m.groups() else m.group(0)
    else:
        csv_path = groups_csv or data / "groups.csv"
        if not csv_path.is_file():
            raise SystemExit(f"error: no group CSV at {csv_path}: pass --groups CSV or --group-regex REGEX")
        groups = read_groups(csv_path, group_column)
    items, missing = [], []
    for f in files:
        rel = f.relative_to(data).as_posix()
        if rel in groups:
            items.append(Item(f, rel.split("/", 1)[0], groups[rel]))
        else:
            missing.append(rel)
    if missing:
        print(f"warning: {len(missing)} image(s) have no group and are left out (first: {missing[0]})")
    return items


def read_groups(path: Path, column: str | None) -> dict[str, str]:
    """``relative path -> group`` from a CSV with a ``path`` column and a group column."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "path" not in fields:
            raise SystemExit(f"error: {path} has no 'path' column (columns: {', '.join(fields)})")
        candidates = [column] if column else [c for c in fields if "group" in c.lower()]
        for key in ("patient", "case", "slide"):
            if not column and key in fields:
                candidates.append(key)
        if not candidates or candidates[0] not in fields:
            raise SystemExit(f"error: {path}: no group column (pass --group-column; columns: {', '.join(fields)})")
        return {row["path"]: row[candidates[0]] for row in reader if row.get(candidates[0])}


def split_by_group(items: list[Item], train_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Sides A and B: per label, a seeded ``train_fraction`` of the groups goes to A; no group is on both sides."""
    by_label: dict[str, dict[str, list[Item]]] = defaultdict(lambda: defaultdict(list))
    for it in items:
        by_label[it.label][it.group].append(it)
    rng = np.random.default_rng(seed)
    a: list[Item] = []
    b: list[Item] = []
    for label in sorted(by_label):
        names = sorted(by_label[label])
        rng.shuffle(names)
        cut = max(1, min(len(names) - 1, round(len(names) * train_fraction)))
        for i, g in enumerate(names):
            (a if i < cut else b).extend(by_label[label][g])
    if {i.group for i in a} & {i.group for i in b}:
        raise SystemExit("error: a group is on both sides (the same group name under two labels?)")
    return a, b


def subsample(items: list[Item], n: int | None, seed: int) -> list[Item]:
    """At most ``n`` items, seeded, order kept."""
    if not n or n >= len(items):
        return items
    idx = np.sort(np.random.default_rng(seed).choice(len(items), size=n, replace=False))
    return [items[int(i)] for i in idx]


def one_per_group(items: list[Item], n: int, seed: int) -> list[Item]:
    """At most ``n`` items, no two from one group (seeded, order kept): the per-epoch probe scores kNN
    leave-one-out over its own images, so two images of one source tile (LC25000 holds rotated and flipped copies)
    would be each other's nearest neighbour. When there are fewer groups than ``n``, fewer items."""
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_group.setdefault(it.group, []).append(i)
    picked = [int(rng.choice(members)) for members in by_group.values()]
    return subsample([items[i] for i in sorted(picked)], n, seed)


def prepare(
    work: Path, a: list[Item], b: list[Item], eval_a: list[Item], eval_b: list[Item], probe: list[Item]
) -> None:
    """``train/`` (side A, flat, unlabeled names), ``probe/<label>/`` and the ingestion manifest."""
    (work / "train").mkdir(parents=True)
    for i, it in enumerate(a):
        shutil.copyfile(it.path, work / "train" / f"{i:06d}{it.path.suffix.lower()}")
    for i, it in enumerate(probe):
        (work / "probe" / it.label).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(it.path, work / "probe" / it.label / f"{i:06d}{it.path.suffix.lower()}")
    with (work / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "dataset", "group"])
        for dataset, side in ((SIDE_A, eval_a), (SIDE_B, eval_b)):
            for it in side:
                w.writerow([str(it.path), it.label, dataset, it.group])


# ------------------------------------------------------------------------------------------------------- floors
def pairs_across_groups(items: list[Item]) -> bool:
    """Pairs never join two images of one group, unless a label has a single group on this side (then they must)."""
    by_label: dict[str, set[str]] = defaultdict(set)
    for it in items:
        by_label[it.label].add(it.group)
    return min(len(g) for g in by_label.values()) >= 2


def score_vectors(vectors: np.ndarray, items: list[Item], n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of seeded balanced pairs, drawn by the product's pair generator."""
    pairs = generate_pairs(
        [it.label for it in items],
        n_pairs,
        groups=[it.group for it in items],
        exclude_same_group=pairs_across_groups(items),
        seed=seed,
    )
    s = np.einsum("ij,ij->i", vectors[[p.a for p in pairs]], vectors[[p.b for p in pairs]])
    return s, np.array([int(p.same) for p in pairs])


def knn_accuracy(vectors: np.ndarray, items: list[Item], k: int = 5) -> float:
    """Majority vote of the ``k`` nearest other images (other groups only), as the product's top-k metric."""
    sims = vectors @ vectors.T
    groups = np.array([it.group for it in items])
    sims[groups[:, None] == groups[None, :]] = -np.inf
    idx = np.argsort(-sims, axis=1)[:, :k]
    labels = [it.label for it in items]
    return M.majority_vote_accuracy([[labels[j] for j in row] for row in idx], labels, k)


def histogram_row(eval_a: list[Item], eval_b: list[Item], args: argparse.Namespace) -> dict[str, Any]:
    t = time.perf_counter()
    va, vb = histogram_embed([i.path for i in eval_a]), histogram_embed([i.path for i in eval_b])
    sa, ya = score_vectors(va, eval_a, args.calib_pairs, args.seed)
    thr = M.best_accuracy_threshold(sa, ya)
    sb, yb = score_vectors(vb, eval_b, args.eval_pairs, args.seed + 1)
    return {
        "method": "colour histogram (8x8x8 RGB)",
        "accuracy": M.accuracy_at(sb, yb, thr),
        "accuracy_ci95": list(M.bootstrap_accuracy_ci(sb, yb, thr, seed=args.seed)),
        "roc_auc": M.roc_auc(sb, yb),
        "knn_accuracy": knn_accuracy(vb, eval_b),
        "threshold_cos": thr,
        "n_eval_pairs": len(sb),
        "embed_s": time.perf_counter() - t,
    }


# -------------------------------------------------------------------------------------- the product's own path
def product_row(
    method: str, checkpoint: Path, work: Path, args: argparse.Namespace, eval_a: list[Item], eval_b: list[Item]
) -> dict[str, Any]:
    """Register ``checkpoint`` in a fresh embedded deployment, ingest both sides, calibrate on A, evaluate on B."""
    from ingest.service import job_status, submit_ingest
    from retrieval.api import Retrieval
    from retrieval.catalog import register_encoder
    from retrieval.db import engine_for, migrate, session_factory
    from retrieval.evaluation import calibrate, evaluate, score_dataset
    from retrieval.settings import get_settings
    from retrieval.store import open_vector_store

    home = work / f"home-{method}"
    settings = get_settings(
        home=home,
        broker_url=None,
        database_url=None,
        vector_backend="edge",
        allowed_roots=[args.data.resolve(), work.resolve()],  # the images, and the manifest written in the work folder
    )
    migrate(settings.db_url)
    engine = engine_for(settings.db_url)
    store = open_vector_store(settings)
    try:
        with session_factory(engine)() as session:
            register_encoder(checkpoint, session=session, store=store, name=f"quality-{method}", activate=True)
    finally:
        store.close()
    t = time.perf_counter()
    job = submit_ingest([], settings=settings, dataset=SIDE_A, manifest=work / "manifest.csv")
    embed_s = time.perf_counter() - t
    status = job_status(job, settings=settings)
    if status.failed:
        print(f"warning: {status.failed} image(s) failed to ingest: {status.failures[:3]}")
    with Retrieval.from_settings(settings) as r:
        across_a, across_b = pairs_across_groups(eval_a), pairs_across_groups(eval_b)
        cal = score_dataset(
            r, SIDE_A, n_pairs=args.calib_pairs, seed=args.seed, exclude_same_group=across_a, topk_queries=0
        )
        calibration = calibrate(r, cal)
        held = score_dataset(
            r, SIDE_B, n_pairs=args.eval_pairs, seed=args.seed + 1, exclude_same_group=across_b,
            topk_queries=args.knn_queries,
        )  # fmt: skip
        report = evaluate(r, held)
    return {
        "method": method,
        "accuracy": report["accuracy"],
        "accuracy_ci95": report["accuracy_ci95"],
        "roc_auc": report.get("roc_auc"),
        "knn_accuracy": report.get("topk", {}).get("majority_vote_at_5"),
        "threshold_cos": calibration["threshold_cos"],
        "threshold_d": calibration["threshold_d"],
        "calibration_accuracy": calibration["accuracy"],
        "n_eval_pairs": report["n_pairs"],
        "images_ingested": status.done,
        "embed_s": embed_s,
    }


def train_method(
    method: str, work: Path, args: argparse.Namespace, budget_s: float | None
) -> tuple[Path, dict[str, Any]]:
    """Train (or build the untrained twin of) ``method``'s encoder on side A; returns checkpoint and facts."""
    from training.presets import get_preset
    from training.trainer import train, write_untrained

    overrides: dict[str, Any] = {"device": args.device, "seed": args.seed}
    preset = "paper" if method == "paper" else args.preset
    config = get_preset(preset).with_overrides({**overrides, **(dict(args.overrides) if method != "paper" else {})})
    if method != "paper" and args.epochs:
        config = config.with_overrides({"epochs": args.epochs})
    ckpt = work / f"{method}.pt"
    facts: dict[str, Any] = {"preset": preset, "backbone": config.backbone, "image_size": config.image_size,
                             "eval_size": config.eval_size}  # fmt: skip
    if method == "untrained":
        write_untrained(work / "train", config, ckpt)
        return ckpt, facts
    t = time.perf_counter()
    last = {"step": 0}

    def progress(step: int, total: int, info: dict[str, float]) -> None:
        if step - last["step"] >= max(1, total // 20) or step == total:
            last["step"] = step
            loss = f" loss {info['loss']:.3f}" if "loss" in info else ""
            print(f"    [{method}] step {step}/{total} epoch {int(info['epoch'])}{loss} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)  # fmt: skip

    budget = args.minutes * 60 if args.minutes else budget_s
    probe = work / "probe" if method == "ours" and args.probe_images else None
    keep_best = probe is not None and args.select_best
    result = train(
        work / "train", config, ckpt, labeled=probe, progress=progress, time_budget_s=budget, keep_best=keep_best
    )
    rows = result.metrics
    seconds = sum(r["seconds"] for r in rows)
    facts.update(
        train_s=seconds,
        wall_s=result.seconds,
        epochs=len(rows),
        steps=sum(r["steps"] for r in rows),
        images_per_s=sum(r["images"] for r in rows) / max(seconds, 1e-9),
        curve=[
            {k: r.get(k) for k in ("epoch", "loss", "probe_auc", "probe_knn_acc", "probe_pair_acc", "seconds")}
            for r in rows
        ],  # fmt: skip
        probe_side={"A": "A", "val": "B (validation groups, not scored)"}.get(args.select_best or "", "B"),
        best_checkpoint=str(result.best_checkpoint) if result.best_checkpoint else None,
        best_epoch=result.best_epoch,
    )
    return ckpt, facts


def checkpoint_facts(checkpoint: Path) -> dict[str, Any]:
    """What the report says about an encoder trained elsewhere (``--checkpoint``): its recipe, read from the file."""
    from training.checkpoint import load_checkpoint

    payload = load_checkpoint(checkpoint)
    config = payload["config"]
    return {"preset": f"{config.get('preset')} from {checkpoint.name}", "backbone": config["backbone"],
            "image_size": config["image_size"], "eval_size": config.get("embed_size") or config["image_size"],
            "epochs": payload.get("epoch")}  # fmt: skip


# ------------------------------------------------------------------------------------------------------- report
def fmt(v: Any, nd: int = 3) -> str:
    return "–" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def print_report(rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    print(f"\n## Quality: {meta['data']} ({meta['date']}, {meta['machine']})\n")
    print(f"Command: `{meta['command']}`  ")
    print(
        f"Split by group: side A {meta['side_a']} images / {meta['groups_a']} groups (train, calibrate), side B "
        f"{meta['side_b']} images / {meta['groups_b']} groups (held out)"
        + (
            f", {meta['validation']} side-B images of other groups kept aside to choose the epoch"
            if meta.get("validation")
            else ""
        )
        + f"; evaluated on {meta['eval_a']} + {meta['eval_b']} images. Load average at start {meta['load_start']}, "
        f"at end {meta['load_end']}.\n"
    )
    print("| method | accuracy (B) | 95 % CI | ROC AUC (B) | kNN-5 (B) | threshold d | train s | img/s | embed s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ci = r.get("accuracy_ci95") or [None, None]
        d = r.get("threshold_d", 2 - 2 * r["threshold_cos"] if r.get("threshold_cos") is not None else None)
        cells = [r["method"], fmt(r["accuracy"]), f"{fmt(ci[0])}–{fmt(ci[1])}", fmt(r.get("roc_auc"))]
        cells += [fmt(r.get("knn_accuracy")), fmt(d), fmt(r.get("train_s"), 0), fmt(r.get("images_per_s"), 1)]
        print("| " + " | ".join([*cells, fmt(r.get("embed_s"), 0)]) + " |")
    for r in rows:
        if r.get("curve"):
            side = r.get("probe_side", "B")
            what = {"A": "Calibration-side (selection)", "B": "Held-out"}.get(side, "Validation (selection)")
            print(f"\n{what} curve of `{r['method']}` (probe on side {side} images; AUC and kNN need no threshold):\n")
            print("| epoch | loss | AUC | kNN | train s |")
            print("|---|---|---|---|---|")
            for c in r["curve"]:
                cells = [str(c["epoch"]), fmt(c["loss"]), fmt(c.get("probe_auc")), fmt(c.get("probe_knn_acc"))]
                print("| " + " | ".join([*cells, fmt(c.get("seconds"), 0)]) + " |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labeled folder DATA/<label>/<image>")
    p.add_argument("--groups", type=Path, help="CSV with 'path' (relative to DATA) and a group column")
    p.add_argument("--group-column", help="the CSV's group column (default: the first whose name has 'group')")
    p.add_argument("--group-regex", help="take the group from the file name (first capture group)")
    p.add_argument("--preset", default="cpu-crops", help="our recipe")
    p.add_argument("--set", dest="overrides", action="append", default=[], type=lambda s: tuple(s.split("=", 1)),
                   metavar="KEY=VALUE", help="override a field of our recipe (repeatable)")  # fmt: skip
    p.add_argument("--epochs", type=int, help="our recipe's epochs (default: the preset's)")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="training time budget of ours and paper (default: ours runs its epochs, paper gets that time)",
    )
    p.add_argument("--methods", default="histogram,untrained,ours,paper")
    p.add_argument(
        "--checkpoint",
        dest="checkpoints",
        action="append",
        default=[],
        metavar="METHOD=PATH",
        type=lambda s: tuple(s.split("=", 1)),
        help="evaluate this checkpoint for METHOD instead of training it (a set it was not trained on)",
    )
    p.add_argument("--train-fraction", type=float, default=0.5)
    p.add_argument("--eval-images", type=int, default=None, help="at most this many images per side are ingested")
    p.add_argument(
        "--probe-images", type=int, default=300, help="held-out images for the per-epoch curve, one per group (0: none)"
    )
    p.add_argument(
        "--select-best",
        choices=("A", "val"),
        help="keep the epoch with the best probe AUC (training.trainer's keep_best) and report it beside the last: "
        "A takes the probe from side A (the images trained on and calibrated on); val from a share of side B's "
        "groups (--val-fraction) that is then left out of side B's evaluation (every row is scored on the rest)",
    )
    p.add_argument("--val-fraction", type=float, default=0.4, help="with --select-best val: side B's groups kept aside")
    p.add_argument("--calib-pairs", type=int, default=2000)
    p.add_argument("--eval-pairs", type=int, default=4000)
    p.add_argument("--knn-queries", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed at the end)")
    p.add_argument("--json", type=Path, help="write the results here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - {"histogram", "untrained", "ours", "paper"}
    if unknown:
        raise SystemExit(f"error: unknown method(s) {', '.join(sorted(unknown))}")
    if not args.data.is_dir():
        raise SystemExit(f"error: --data {args.data} is not a folder")
    args.data = args.data.resolve()  # the manifest holds absolute paths
    given = {m: Path(path).resolve() for m, path in args.checkpoints}
    for m, path in given.items():
        if m not in methods or m == "histogram" or not path.is_file():
            raise SystemExit(f"error: --checkpoint {m}={path}: needs a trained method in --methods and a file")
    if args.select_best and not args.probe_images:
        raise SystemExit("error: --select-best chooses the epoch on a probe: give --probe-images N > 0")
    if not 0 < args.val_fraction < 1:
        raise SystemExit(f"error: --val-fraction {args.val_fraction}: give a share of side B's groups between 0 and 1")
    load_start = os.getloadavg()[0]
    items = load_items(args.data, args.groups, args.group_column, args.group_regex)
    a, b = split_by_group(items, args.train_fraction, args.seed)
    val: list[Item] = []
    if args.select_best == "val":  # a validation share of the held-out groups: chooses the epoch, never scored
        val, b = split_by_group(b, args.val_fraction, args.seed + 3)
    eval_a, eval_b = subsample(a, args.eval_images, args.seed), subsample(b, args.eval_images, args.seed + 1)
    probe_from = {"A": a, "val": val}.get(args.select_best or "", b)
    probe = one_per_group(probe_from, args.probe_images, args.seed + 2) if args.probe_images else []
    work = args.work or Path(tempfile.mkdtemp(prefix="histoquery-quality-"))
    if args.work and work.exists():
        shutil.rmtree(work)
    print(f"data {args.data}: {len(items)} images; side A {len(a)} ({len({i.group for i in a})} groups), side B "
          f"{len(b)} ({len({i.group for i in b})} groups); work folder {work}", flush=True)  # fmt: skip
    prepare(work, a, b, eval_a, eval_b, probe)
    for side, name in ((eval_a, "A"), (eval_b, "B")):
        if not pairs_across_groups(side):
            print(f"warning: side {name} has a label with a single group: its pairs may join two images of one group")
    rows: list[dict[str, Any]] = []
    ours_s: float | None = None  # paper gets our training time unless --minutes sets one for both
    try:
        for method in methods:
            print(f"== {method}", flush=True)
            if method == "histogram":
                rows.append(histogram_row(eval_a, eval_b, args))
            else:
                if method in given:
                    ckpt, facts = given[method], checkpoint_facts(given[method])
                else:
                    ckpt, facts = train_method(method, work, args, ours_s if method == "paper" else None)
                if method == "ours" and "train_s" in facts:
                    ours_s = facts["train_s"]
                row = product_row(method, ckpt, work, args, eval_a, eval_b)
                row.update(facts)
                row["method"] = f"{method} ({facts['preset']}, {facts['backbone']} {facts['image_size']}→"\
                                f"{facts['eval_size']} px)"  # fmt: skip
                rows.append(row)
                if facts.get("best_checkpoint"):  # --select-best: the epoch chosen on side A, beside the last one
                    best = product_row(f"{method}-best", Path(facts["best_checkpoint"]), work, args, eval_a, eval_b)
                    best["method"] = (
                        f"{method}, epoch {facts['best_epoch']}/{facts['epochs']} (best {args.select_best} probe AUC)"
                    )
                    rows.append(best)
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "curve"}, default=str), flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    import torch

    meta = {
        "data": str(args.data),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "side_a": len(a), "side_b": len(b), "validation": len(val),
        "groups_a": len({i.group for i in a}), "groups_b": len({i.group for i in b}),
        "eval_a": len(eval_a), "eval_b": len(eval_b),
        "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    print_report(rows, meta)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
