"""``histoquery demo``: the whole platform on the embedded default, in one command.

Train (the ``cpu-texture`` preset, or the GPU preset when CUDA is present) on a labeled folder (default: the shipped
Kather 2016 sample), register the checkpoint as the active encoder version, ingest the images (labels from folder
names) and a slide into embedded Qdrant + SQLite, calibrate the same/different threshold on pairs from one half of
the labeled images' groups (source images), evaluate it on pairs from the other half (held out: no image and no
group on both sides), score the encoder's untrained twin (same seed, no training step) on the same pairs, print a
report with both side by side, then start the dashboard (its Accuracy page opens on the held-out pairs).

Every step reuses what a previous run left under ``--home``: the checkpoint, the ingested images (content hashes),
the calibration. This module only composes the other packages' public APIs; it holds no pipeline logic.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
DEFAULT_DATA = SAMPLES / "kather2016"
DEFAULT_SLIDE = SAMPLES / "slides" / "cmu_small_region.svs"
DATASET = "demo"
SLIDE_DATASET = "demo-slides"
CALIBRATION_SET = "demo-calibration"
EVALUATION_SET = "demo-evaluation"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train, ingest, calibrate and evaluate on the sample, then start the dashboard",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--data", type=Path, default=None, help="labeled folder (one sub-folder per class); default: sample")
    p.add_argument("--slide", type=Path, action="append", default=None, help="slide(s) to ingest; default: sample")
    p.add_argument("--home", type=Path, default=None, help="where everything is stored (default HISTOQUERY_HOME)")
    p.add_argument("--steps", type=int, default=None, help="cap the training steps (quick runs, CI)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the preset's)")
    p.add_argument("--preset", default=None, help="training preset (default cpu-texture; GPU preset with CUDA)")
    p.add_argument("--pairs", type=int, default=200, help="labeled pairs per half (calibration / evaluation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain", action="store_true", help="train again even if a checkpoint exists")
    p.add_argument("--no-dashboard", action="store_true", help="print the report and exit")
    p.add_argument("--port", type=int, default=8501, help="dashboard port")
    p.set_defaults(handler=run)


# ------------------------------------------------------------------------------------------------- report plumbing
@dataclass
class Report:
    """What the demo did, printed at the end and written to ``home/demo/report.json``."""

    timings: dict[str, float] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"timings_s": self.timings, "reused": self.reused, **self.facts}


@contextmanager
def step(report: Report, index: int, total: int, name: str, title: str) -> Iterator[Callable[[bool], None]]:
    """Print ``[i/n] title``; time the block; the yielded callback marks the step as reused."""
    print(f"[{index}/{total}] {title}", flush=True)
    start = time.perf_counter()

    def mark_reused(value: bool = True) -> None:
        report.reused[name] = value

    report.reused[name] = False
    yield mark_reused
    report.timings[name] = round(time.perf_counter() - start, 2)
    suffix = " (reused)" if report.reused[name] else ""
    print(f"      done in {report.timings[name]:.1f}s{suffix}", flush=True)


# ------------------------------------------------------------------------------------------------------ the steps
def _choose_preset(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Preset name and overrides: cpu-texture on CPU; on CUDA the GPU preset shortened to the sample's size."""
    import torch

    if args.preset:
        name, overrides = args.preset, {}
    elif torch.cuda.is_available():
        name, overrides = "recommended", {"epochs": 20, "batch_size": 32, "warmup_epochs": 2}
    else:
        name, overrides = "cpu-texture", {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    overrides["seed"] = args.seed
    return name, overrides


def train_step(args: argparse.Namespace, data: Path, out: Path, report: Report) -> Path:
    """Train the encoder unless a loadable checkpoint is already at ``out``."""
    from training.encoder import Encoder
    from training.errors import TrainingError

    if out.exists() and not args.retrain:
        try:
            encoder = Encoder.from_checkpoint(out, device="cpu")
        except TrainingError as exc:
            print(f"      existing checkpoint unusable ({exc}); training again")
        else:
            report.reused["train"] = True
            report.facts["encoder"] = {"backbone": encoder.backbone, "dim": encoder.dim, "checkpoint": str(out)}
            print(f"      reusing {out} ({encoder.backbone}, {encoder.dim}-d)")
            return out
    from tqdm import tqdm

    from training.presets import get_preset
    from training.trainer import train

    name, overrides = _choose_preset(args)
    config = get_preset(name).with_overrides(overrides)
    print(
        f"      preset {name}: {config.backbone} {config.image_size}px, {config.epochs} epochs, batch "
        f"{config.batch_size}"
    )
    bar = tqdm(total=0, unit="step", dynamic_ncols=True, leave=False)

    def progress(done: int, total: int, info: dict[str, float]) -> None:
        bar.total = total
        bar.n = done
        if "loss" in info:
            bar.set_postfix(epoch=int(info.get("epoch", 0)), loss=f"{info['loss']:.3f}", refresh=False)
        bar.refresh()

    try:
        result = train(data, config, out, labeled=data, progress=progress, max_steps_per_epoch=args.steps)
    finally:
        bar.close()
    last = result.metrics[-1] if result.metrics else {}
    report.facts["encoder"] = {"backbone": config.backbone, "preset": name, "checkpoint": str(out)}
    report.facts["training"] = {
        "files": result.num_files,
        "bad_files": len(result.bad_files),
        "epochs": result.epochs_run,
        "seconds": round(result.seconds, 1),
        "final_loss": last.get("loss"),
        "probe_pair_acc": last.get("probe_pair_acc"),
    }
    loss = last.get("loss")
    loss_txt = "n/a" if loss is None else f"{loss:.4f}"
    print(
        f"      {result.epochs_run} epochs on {result.num_files} images in {result.seconds:.1f}s, final loss {loss_txt}"
    )
    return out


def run(args: argparse.Namespace) -> int:
    from cli.errors import CLIError
    from retrieval.settings import get_settings

    if not args.quiet and args.verbose <= 1:
        logging.getLogger().setLevel(logging.WARNING)  # the steps print their own progress; -vv for library logs
    data = (args.data or DEFAULT_DATA).resolve()
    if not data.is_dir():
        raise CLIError(f"--data {data}: not a folder (expected one sub-folder of images per class)")
    slides = [s.resolve() for s in (args.slide or ([DEFAULT_SLIDE] if args.data is None else []))]
    for s in slides:
        if not s.is_file():
            raise CLIError(f"--slide {s}: no such file")
    overrides: dict[str, Any] = {"broker_url": None, "database_url": None, "vector_backend": "edge"}
    if args.home is not None:
        overrides["home"] = args.home
    settings = get_settings(**overrides)
    home = settings.home.resolve()
    demo_dir = home / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    settings = get_settings(
        **{**overrides, "home": home, "allowed_roots": [data, demo_dir, *(s.parent for s in slides)]}
    )
    report = Report(facts={"home": str(home), "data": str(data), "slides": [str(s) for s in slides]})
    total = 6 if args.no_dashboard else 7
    started = time.perf_counter()
    print(f"HistoQuery demo: data {data}, everything under {home}")

    with step(report, 1, total, "train", "train the BYOL encoder"):
        checkpoint = train_step(args, data, demo_dir / "encoder.pt", report)
    with step(report, 2, total, "register", "set up the database and register the encoder"):
        register_step(settings, checkpoint, report)
    with step(report, 3, total, "ingest", f"ingest {data.name} (labels from folders) and {len(slides)} slide(s)"):
        ingest_step(settings, data, slides, report)
    with step(report, 4, total, "calibrate", "calibrate the same/different threshold on half of the labeled images"):
        calibrate_step(settings, args, report)
    with step(report, 5, total, "evaluate", "evaluate on pairs from the other half"):
        evaluate_step(settings, args, report)
    with step(report, 6, total, "twin", "the same on the untrained twin (same seed, no training step)"):
        twin_step(settings, args, data, checkpoint, report)
    report.timings["total"] = round(time.perf_counter() - started, 2)
    print_report(report)
    (demo_dir / "report.json").write_text(json.dumps(report.to_json(), indent=2))
    print(f"report written to {demo_dir / 'report.json'}")
    if args.no_dashboard:
        return 0
    print(f"[7/{total}] start the dashboard")
    return dashboard_step(home, args.port)


def print_report(report: Report) -> None:
    """The short human-readable summary."""
    f = report.facts
    print("\n==== HistoQuery demo report ====")
    enc = f.get("encoder", {})
    print(f"encoder      : {enc.get('name', '?')} ({enc.get('backbone', '?')}, {enc.get('dim', '?')}-d)")
    ing = f.get("ingest", {})
    print(
        f"ingested     : {ing.get('images', 0)} images, {ing.get('tiles', 0)} slide tiles, "
        f"{ing.get('failed', 0)} failed"
    )
    cal = f.get("calibration", {})
    if cal:
        print(
            f"threshold    : cos >= {cal['threshold_cos']:.4f} means same  (study's convention d = 2 - 2cos "
            f"<= {cal['threshold_d']:.4f}); calibrated on {cal['pairs']} pairs"
        )
    ev = f.get("evaluation", {})
    if ev:
        auc = ev.get("auc")
        auc_txt = f", ROC AUC {auc:.3f}" if isinstance(auc, float) else ""
        print(f"accuracy     : {ev['accuracy']:.3f} on {ev['pairs']} held-out pairs{auc_txt}")
    twin = f.get("untrained_twin", {})
    if ev and twin:
        auc, twin_auc = ev.get("auc"), twin.get("auc")
        both_auc = isinstance(auc, float) and isinstance(twin_auc, float)
        print(f"untrained    : {twin['accuracy']:.3f}" + (f", ROC AUC {twin_auc:.3f}" if both_auc else "")
              + " (the same encoder before any training step, same pairs)")  # fmt: skip
        gain = ev["accuracy"] - twin["accuracy"]
        verdict = "training helped" if gain > 0 else "training did NOT beat the untrained twin here"
        auc_gain = f", AUC {auc - twin_auc:+.3f}" if both_auc else ""
        print(f"               {verdict}: accuracy {gain:+.3f}{auc_gain} (a few minutes on a small sample rarely do)")
    times = ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items())
    print(f"timings      : {times}")
    reused = [k for k, v in report.reused.items() if v]
    if reused:
        print(f"reused       : {', '.join(reused)}")


@contextmanager
def _catalog(settings: Any) -> Iterator[tuple[Any, Any]]:
    """A SQL session and the vector store, closed on exit (the embedded store is one process's at a time)."""
    from retrieval.db import engine_for, session_factory
    from retrieval.store import open_vector_store

    store = open_vector_store(settings)
    try:
        with session_factory(engine_for(settings.db_url))() as session:
            yield session, store
    finally:
        store.close()


def register_step(settings: Any, checkpoint: Path, report: Report) -> None:
    """Create/upgrade the SQLite schema and register the checkpoint as the active encoder version."""
    from sqlalchemy import select

    from retrieval.catalog import register_encoder
    from retrieval.db import migrate
    from retrieval.models import EncoderVersion
    from training.checkpoint import file_sha256

    migrate(settings.db_url)
    sha = file_sha256(checkpoint)
    with _catalog(settings) as (session, store):
        known = session.scalar(select(EncoderVersion).where(EncoderVersion.checkpoint_sha256 == sha))
        version = register_encoder(checkpoint, session=session, store=store, activate=True)
        report.facts.setdefault("encoder", {}).update({"name": version.name, "dim": version.dim})
    report.reused["register"] = known is not None
    print(f"      active encoder version {version.name}")


#: The source image a Kather 2016 tile was cut from (its file name says so): the group of the demo's split.
SOURCE_IMAGE = r"(CRC-Prim-HE-\d+)"


def write_manifest(data: Path, out: Path, seed: int = 0) -> dict[str, int]:
    """Manifest of ``data/<label>/...`` images split into a calibration and an evaluation set by group.

    A file's group is the source image its name names (``CRC-Prim-HE-07`` in the Kather 2016 sample), written to
    the manifest's ``group`` column; a file without one is its own group. Groups are split in two with
    ``retrieval.groups.split_groups`` (seeded; the first seed whose halves both hold two labels), so no source
    image has tiles on both sides and the evaluation is held out. Returns the number of images per dataset.
    """
    import csv
    import re

    from retrieval.groups import split_groups
    from training.pixels import IMAGE_SUFFIXES

    labels = sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(labels) < 2:
        from cli.errors import CLIError

        raise CLIError(
            f"--data {data}: needs at least two class sub-folders (folder name = label), found {len(labels)}"
        )
    rows: list[tuple[Path, str, str | None]] = []
    for label_dir in labels:
        for path in sorted(p for p in label_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            match = re.search(SOURCE_IMAGE, path.name)
            rows.append((path, label_dir.name, match.group(1) if match else None))
    groups = [g for _, _, g in rows]
    for attempt in range(seed, seed + 20):
        cal, _ = split_groups(groups, fraction=0.5, seed=attempt)
        if all(
            len({lab for (_, lab, _), c in zip(rows, cal, strict=True) if c == side}) >= 2 for side in (True, False)
        ):
            break
    counts = {CALIBRATION_SET: 0, EVALUATION_SET: 0}
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "dataset", "group"])
        for (path, label, group), is_cal in zip(rows, cal, strict=True):
            dataset = CALIBRATION_SET if is_cal else EVALUATION_SET
            writer.writerow([str(path), label, dataset, group or ""])
            counts[dataset] += 1
    return counts


def ingest_step(settings: Any, data: Path, slides: list[Path], report: Report) -> None:
    """Ingest the labeled images (via a manifest that splits their groups in two halves) and the slides, in-process."""
    from tqdm import tqdm

    from ingest.service import job_status, submit_ingest

    manifest = settings.home / "demo" / "manifest.csv"
    halves = write_manifest(data, manifest)
    bar = tqdm(total=0, unit="img", dynamic_ncols=True, leave=False)

    def progress(status: Any) -> None:
        bar.total = status.total
        bar.n = status.processed
        bar.set_postfix(done=status.done, skipped=status.skipped, failed=status.failed, refresh=False)
        bar.refresh()

    try:
        job_id = submit_ingest(
            [str(s) for s in slides], settings=settings, dataset=SLIDE_DATASET, manifest=manifest, progress=progress
        )
    finally:
        bar.close()
    status = job_status(job_id, settings=settings)
    counts = _stored_counts(settings)
    report.facts["ingest"] = {
        "job": job_id,
        "status": status.status,
        "new": status.done,
        "already_stored": status.skipped,
        "failed": status.failed,
        "images": counts["images"],
        "tiles": counts["tiles"],
        "calibration_images": halves[CALIBRATION_SET],
        "evaluation_images": halves[EVALUATION_SET],
        "failures": [f"{f.source}: {f.reason}" for f in status.failures[:10]],
    }
    report.reused["ingest"] = status.done == 0 and status.skipped > 0
    print(
        f"      job {job_id} {status.status}: {status.done} new, {status.skipped} already stored, "
        f"{status.failed} failed; stored: {counts['images']} images + {counts['tiles']} slide tiles"
    )
    for failure in status.failures[:5]:
        print(f"      failed: {failure.source}: {failure.reason}")


def _stored_counts(settings: Any) -> dict[str, int]:
    """Embedded images and slide tiles of the active encoder version."""
    from sqlalchemy import func, select

    from retrieval.catalog import active_encoder_version
    from retrieval.models import Embedding, Image

    with _catalog(settings) as (session, _store):
        version = active_encoder_version(session=session)
        base = select(func.count()).select_from(Image).join(Embedding, Embedding.image_id == Image.id)
        base = base.where(Embedding.encoder_version_id == version.id)
        tiles = session.scalar(base.where(Image.slide_id.is_not(None))) or 0
        images = session.scalar(base.where(Image.slide_id.is_(None))) or 0
    return {"images": int(images), "tiles": int(tiles)}


def calibrate_step(settings: Any, args: argparse.Namespace, report: Report) -> None:
    """Choose the threshold on pairs from the calibration half (reused when already calibrated there)."""
    from retrieval.api import Retrieval
    from retrieval.evaluation import calibrate, score_dataset
    from retrieval.thresholds import cos_to_d

    source = f"dataset:{CALIBRATION_SET}"
    with Retrieval.from_settings(settings) as retrieval:
        version = retrieval.version
        stored = version.calibration or {}
        if version.threshold_cos is not None and stored.get("source") == source and not args.retrain:
            report.reused["calibrate"] = True
            thr, n_pairs, acc = float(version.threshold_cos), int(stored.get("n_pairs", 0)), stored.get("accuracy")
        else:
            scored = score_dataset(retrieval, CALIBRATION_SET, n_pairs=args.pairs, seed=args.seed)
            result = calibrate(retrieval, scored, pair_set_name=f"{CALIBRATION_SET}-{version.name}")
            thr, n_pairs, acc = float(result["threshold_cos"]), int(result["n_pairs"]), result["accuracy"]
    report.facts["calibration"] = {
        "threshold_cos": thr,
        "threshold_d": float(cos_to_d(thr)),
        "pairs": n_pairs,
        "accuracy_on_calibration_pairs": acc,
    }
    print(f"      threshold cos {thr:.4f} (d {float(cos_to_d(thr)):.4f}) from {n_pairs} pairs")


def evaluate_step(settings: Any, args: argparse.Namespace, report: Report) -> None:
    """Report accuracy at the calibrated threshold on pairs from the held-out half (never re-tunes)."""
    from retrieval.api import Retrieval
    from retrieval.evaluation import evaluate, score_dataset

    with Retrieval.from_settings(settings) as retrieval:
        scored = score_dataset(retrieval, EVALUATION_SET, n_pairs=args.pairs, seed=args.seed + 1)
        result = evaluate(retrieval, scored, pair_set_name=f"{EVALUATION_SET}-{retrieval.version.name}-{args.seed}")
    report.facts["evaluation"] = {
        "accuracy": float(result["accuracy"]),
        "accuracy_ci95": result.get("accuracy_ci95"),
        "auc": result.get("roc_auc"),
        "eer": result.get("eer"),
        "pairs": int(result["n_pairs"]),
        "threshold_source": result.get("threshold_source"),
        "groups": result.get("groups"),
        "in_sample": result.get("in_sample"),
        "topk": result.get("topk", {}),
    }
    print(f"      accuracy {result['accuracy']:.3f} on {result['n_pairs']} pairs")


TWIN = "demo-untrained-twin"


def twin_step(settings: Any, args: argparse.Namespace, data: Path, checkpoint: Path, report: Report) -> None:
    """Score the trained encoder's untrained twin on the same held-out pairs, so the report shows what training
    added (honestly, also when it loses). The twin is embedded into its own collection; the active encoder stays.
    """
    from ingest.service import submit_reembed
    from retrieval.api import Retrieval
    from retrieval.evaluation import calibrate, evaluate, score_dataset
    from training.checkpoint import load_checkpoint
    from training.config import TrainConfig
    from training.trainer import write_untrained

    twin_path = checkpoint.with_name("untrained-twin.pt")
    if not twin_path.exists() or args.retrain:
        config = TrainConfig.from_dict(load_checkpoint(checkpoint)["config"])
        write_untrained(data, config.with_overrides({"device": "cpu"}), twin_path)
    submit_reembed(settings=settings, checkpoint=twin_path, name=TWIN, activate=False)
    with Retrieval.from_settings(settings, encoder_name=TWIN) as retrieval:
        stored = retrieval.version.calibration or {}
        if retrieval.version.threshold_cos is None or stored.get("source") != f"dataset:{CALIBRATION_SET}":
            cal = score_dataset(retrieval, CALIBRATION_SET, n_pairs=args.pairs, seed=args.seed)
            calibrate(retrieval, cal, pair_set_name=f"{CALIBRATION_SET}-{TWIN}")
        held = score_dataset(retrieval, EVALUATION_SET, n_pairs=args.pairs, seed=args.seed + 1)
        result = evaluate(retrieval, held, pair_set_name=f"{EVALUATION_SET}-{TWIN}-{args.seed}")
    report.facts["untrained_twin"] = {
        "accuracy": float(result["accuracy"]),
        "accuracy_ci95": result.get("accuracy_ci95"),
        "auc": result.get("roc_auc"),
        "pairs": int(result["n_pairs"]),
    }
    print(f"      untrained twin: accuracy {result['accuracy']:.3f} on {result['n_pairs']} pairs")


def dashboard_step(home: Path, port: int, timeout: float = 120.0) -> int:
    """Start the dashboard on this deployment (same home) in a child process, print its URL, wait for Ctrl-C.

    The child runs in its own session; whatever ends the demo (Ctrl-C, SIGTERM, an error) stops its whole group.
    """
    import os
    import signal
    import urllib.request

    env = {k: v for k, v in os.environ.items() if not k.startswith("HISTOQUERY_")}
    env["HISTOQUERY_HOME"] = str(home)
    cmd = [sys.executable, "-m", "cli.main", "dashboard", "--port", str(port), "--headless"]
    proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        if proc.poll() is not None:
            print(f"dashboard exited with code {proc.returncode}: run `histoquery dashboard --port {port}` to see why")
            return int(proc.returncode or 1)
        print(f"dashboard: http://localhost:{port}   (Ctrl-C to stop)", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
