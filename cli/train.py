"""``histoquery train DATA_DIR``: train a BYOL encoder on a folder of unlabeled images."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# CLI flag -> config field (flags default to None = keep the preset's value)
_FLAG_FIELDS = {
    "backbone": "backbone",
    "backbone_weights": "backbone_weights",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "image_size": "image_size",
    "lr": "lr",
    "optimizer": "optimizer",
    "seed": "seed",
    "device": "device",
    "num_workers": "num_workers",
    "representation": "representation",
}


#: ``training.backbones.BACKBONES``' names, listed here so that parsing stays free of torch (a test checks they match).
BACKBONE_NAMES = ("resnext50_32x4d", "resnext101_32x8d", "resnet18", "resnet18-nopool", "resnet50")
#: ``training.config.Representation``'s values, for the same reason (checked by the same test).
REPRESENTATIONS = ("backbone", "projection", "texture")
PRESET_NAMES = "paper, fast-cpu, cpu-crops, cpu-crops-long, cpu-texture or recommended"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a BYOL encoder on a folder of images",
        description="Train BYOL on every image under DATA_DIR (recursive). Writes a checkpoint every epoch and "
        "<out>.metrics.csv/.json next to it. Any preset field can be overridden with --set KEY=VALUE "
        "(e.g. --set ema_schedule=cosine --set aug.hue=0.05 --set view2.solarize_prob=0).",
    )
    p.add_argument("data_dir", type=Path, help="folder of training images (searched recursively)")
    p.add_argument(
        "--preset",
        default=None,
        help=f"recipe: {PRESET_NAMES} (default: paper, or the checkpoint's own config "
        "with --resume); an unknown name is refused with the list",
    )
    p.add_argument("--backbone", choices=BACKBONE_NAMES)
    p.add_argument("--backbone-weights", type=str, help="local torchvision state_dict to initialise the backbone")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=("sgd", "adamw", "lars"))
    p.add_argument(
        "--representation",
        choices=REPRESENTATIONS,
        help="what the Encoder returns: backbone (pooled features), projection, or texture (early-stage second-order "
        "statistics on axes fitted to the training images; cpu-texture's)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--device", type=str, help="auto | cpu | cuda | cuda:1 (default: settings.device)")
    p.add_argument("--num-workers", type=int, help="decode workers (default: 8 on CUDA, 0 on CPU)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field; repeatable",
    )
    p.add_argument("--out", type=Path, help="checkpoint path (default: <home>/checkpoints/byol-<preset>.pt)")
    p.add_argument("--resume", action="store_true", help="continue from --out where it stopped")
    p.add_argument(
        "--labeled",
        type=Path,
        help="labeled folder (class sub-folders) or pairs CSV (path_a,path_b,same) for a per-epoch probe",
    )
    p.add_argument(
        "--keep-best",
        action="store_true",
        help="with --labeled: also keep the epoch with the best probe AUC as <out stem>.best.pt (early stopping)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--minutes",
        type=float,
        help="fit the run into this much training time: the schedule is re-planned to end there (checkpoint kept)",
    )
    p.set_defaults(handler=run)  # fmt: skip


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from cli.errors import CLIError

    values: dict[str, Any] = {}
    for flag, field_name in _FLAG_FIELDS.items():
        value = getattr(args, flag, None)
        if value is not None:
            values[field_name] = value
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--set expects KEY=VALUE, got {item!r}")
        values[key.strip()] = value.strip()
    return values


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from retrieval.settings import get_settings
    from training.checkpoint import load_checkpoint
    from training.config import TrainConfig
    from training.errors import CheckpointError
    from training.presets import get_preset
    from training.trainer import metrics_paths, train

    if args.minutes is not None and not args.minutes > 0:
        from cli.errors import CLIError

        raise CLIError(f"--minutes must be a positive number of minutes, got {args.minutes:g}")
    settings = get_settings()
    overrides = _overrides(args)
    if "device" not in overrides:
        overrides["device"] = settings.device
    preset = args.preset or "paper"
    out: Path = args.out or settings.home / "checkpoints" / f"byol-{preset}.pt"
    if args.resume:
        if not out.is_file():
            raise CheckpointError(f"--resume: no checkpoint at {out}; pass the --out of the run to continue")
        base = get_preset(args.preset) if args.preset else TrainConfig.from_dict(load_checkpoint(out)["config"])
    else:
        base = get_preset(preset)
    config = base.with_overrides(overrides)

    bar = tqdm(total=0, unit="step", disable=args.no_progress, dynamic_ncols=True)
    last_loss: dict[str, float] = {}

    def progress(step: int, total: int, info: dict[str, float]) -> None:
        if bar.total != total:
            bar.total = total
            bar.n = step - 1
        if "loss" in info:
            last_loss["loss"] = info["loss"]
        bar.set_postfix(epoch=int(info["epoch"]), loss=f"{last_loss.get('loss', float('nan')):.3f}", refresh=False)
        bar.update(1)

    try:
        result = train(
            args.data_dir,
            config,
            out,
            resume=args.resume,
            labeled=args.labeled,
            progress=progress,
            time_budget_s=args.minutes * 60 if args.minutes is not None else None,
            keep_best=args.keep_best,
        )
    finally:
        bar.close()
    csv_path, json_path = metrics_paths(out)
    last_epoch = result.start_epoch + result.epochs_run
    print(
        f"trained {config.backbone} ({config.preset} preset, {config.image_size} px) on {result.num_files} files "
        f"from {args.data_dir} in {result.seconds:.1f}s: epochs {result.start_epoch + 1}..{last_epoch}"
    )
    for row in result.metrics[result.start_epoch :]:
        extra = "".join(
            f" {k.removeprefix('probe_')}={row[k]:.3f}"
            for k in ("probe_pair_acc", "probe_auc", "probe_knn_acc", "probe_threshold_d")
            if k in row
        )
        warn = " COLLAPSE?" if row.get("collapse_warning") else ""
        print(
            f"  epoch {row['epoch']:>3}: loss {row['loss']:.4f}  collapse-score {row['collapse_score']:.3f}  "
            f"bad files {row['bad_files']}{extra}{warn}"
        )
    if result.bad_files:
        print(f"skipped {len(result.bad_files)} unreadable file(s):")
        for path, reason in list(result.bad_files.items())[:20]:
            print(f"  {path}: {reason}")
    print(f"checkpoint: {out}\nmetrics:    {csv_path}\n            {json_path}")
    if result.best_checkpoint is not None:
        auc = next(r["probe_auc"] for r in result.metrics if r["epoch"] == result.best_epoch)
        print(f"best:       {result.best_checkpoint} (epoch {result.best_epoch}, probe AUC {auc:.3f})")
    return 0  # fmt: skip
