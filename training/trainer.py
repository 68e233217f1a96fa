"""The BYOL train loop: data -> GPU/CPU augmentation -> BYOL step -> EMA; per-epoch metrics and atomic checkpoints.

``train(data_dir, config, out)`` writes ``out`` (the checkpoint, every epoch) and, next to it,
``<out stem>.metrics.csv`` and ``<out stem>.metrics.json``. ``resume=True`` continues from ``out``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from training.byol import BYOL, cosine_ema_rate
from training.checkpoint import build_payload, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data import EpochBatchSampler, ImageFiles, collate, epoch_seed, fingerprint, list_images
from training.encoder import native_cpu_bf16, resolve_device
from training.errors import CheckpointError, ConfigError, DataError
from training.features import center_subset, embedder, feature_means, needs_fit_images, texture_state
from training.monitor import CollapseMonitor
from training.optim import build_optimizer, lr_at, steps_within_budget
from training.probe import Probe
from training.readout import require_fit_images
from training.runlog import metrics_paths, write_metrics

__all__ = ["ProgressFn", "TrainResult", "metrics_paths", "train", "write_untrained"]

logger = logging.getLogger(__name__)

#: Called after every step with ``(global_step, total_steps, info)``; info has ``loss`` (every 10 steps), ``epoch``.
ProgressFn = Callable[[int, int, dict[str, float]], None]

#: Between two fits of the feature means / texture read-out, at least this many times the last fit's seconds of
#: training (fitting then costs at most ~10 % of the run; every epoch when epochs are long).
FIT_EVERY = 9
#: With a time budget, this invocation's first steps (slower while allocator and caches warm up) are not timed for
#: the plan that fits the schedule into the budget.
PLAN_SKIP = 5
#: Fields that shape the model: a resumed checkpoint must agree on them.
_MODEL_FIELDS = ("backbone", "image_size", "projection_dim", "hidden_dim")


@dataclass
class TrainResult:
    """What a run did."""

    checkpoint: Path
    metrics: list[dict[str, Any]]
    epochs_run: int
    start_epoch: int
    num_files: int
    bad_files: dict[str, str] = field(default_factory=dict)  # path -> reason
    seconds: float = 0.0
    best_checkpoint: Path | None = None  # with keep_best: the epoch with the highest probe AUC
    best_epoch: int | None = None


def train(
    data_dir: str | Path,
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    labeled: str | Path | None = None,
    progress: ProgressFn | None = None,
    max_steps_per_epoch: int | None = None,
    time_budget_s: float | None = None,
    keep_best: bool = False,
) -> TrainResult:
    """Train BYOL on every image under ``data_dir``.

    Args:
        data_dir: folder searched recursively for images.
        config: the run's configuration (see :mod:`training.presets`).
        out: checkpoint path, rewritten atomically after every epoch.
        resume: continue from ``out`` (its weights, optimizer and epoch); model-shaping fields must match.
        labeled: optional labeled folder or pairs CSV for the per-epoch probe.
        progress: optional per-step callback (the CLI drives a tqdm bar with it).
        max_steps_per_epoch: cap steps per epoch (benchmarks, smoke runs).
        time_budget_s: fit the run into this much training time (the probe's and the fits' time is not counted):
            after every step the run's length is re-planned from the measured step time (never longer than
            planned), so the learning-rate / EMA schedule ends at the last step that fits instead of being cut
            off; the run also stops after the step that exhausts the budget. The checkpoint then holds the last,
            partial epoch, and each epoch's metrics row has ``planned_steps``. Benchmarks compare recipes at equal
            time with it; a user gets a recipe that fits their machine's time.
        keep_best: also keep the epoch whose probe ROC AUC is highest as :func:`best_path` (``out`` stays the
            last epoch, for ``resume``). Needs ``labeled``: it is early stopping on labeled pairs the user holds
            (the ones that calibrate the threshold), never on the pairs a result is reported on.

    Raises:
        DataError: empty folder, no readable image.
        CheckpointError: ``resume`` with a missing / incompatible checkpoint.
        ConfigError: ``keep_best`` without ``labeled``.
    """
    t_start = time.perf_counter()
    out = Path(out)
    if keep_best and not labeled:
        raise ConfigError("keeping the best epoch needs a labeled probe (--labeled) to choose it by")
    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    files = list_images(data_dir)
    if config.representation == "texture":
        require_fit_images(len(files), data_dir)  # before training, not after it
    data_fp = fingerprint(files, data_dir)
    torch.manual_seed(config.seed)
    model = BYOL(config.backbone, config.projection_dim, config.hidden_dim, config.backbone_weights).to(device)
    cpu_bf16 = not cuda and config.cpu_bf16 and native_cpu_bf16()
    if not cuda and config.cpu_bf16 and not cpu_bf16:
        logger.info("cpu_bf16: this CPU has no native bf16 (AVX512-BF16 / AMX), so training runs in float32")
    channels_last = config.channels_last or cpu_bf16  # 1.10-1.13x the float32 CPU step too (BENCHMARKS.md)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = build_optimizer(model.online_parameters(), config.optimizer, config.lr, config.momentum, config.weight_decay)
    start_epoch, global_step = 0, 0
    history: list[dict[str, Any]] = []
    if resume:
        start_epoch, global_step, history = _restore(out, config, model, opt, data_fp)
    probe = (
        Probe.from_path(labeled, config.eval_size, config.probe_pairs, config.probe_knn_k, config.seed)
        if labeled
        else None
    )
    center_images = center_subset(files, config) if needs_fit_images(config) else None
    sampler = EpochBatchSampler(len(files), config.batch_size, config.seed)
    workers = config.num_workers if config.num_workers is not None else (min(8, os.cpu_count() or 1) if cuda else 0)
    cache_bytes = config.decode_cache_mb * 2**20 if workers == 0 else 0  # a worker's cache would die with it
    loader = DataLoader(
        ImageFiles(files, config.decode_size, cache_bytes),
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
    steps_per_epoch = min(len(sampler), max_steps_per_epoch or len(sampler))
    epochs, total_steps = config.planned_steps(steps_per_epoch)
    planned_steps = total_steps  # a time budget re-plans total_steps (never above this) as the steps are timed
    run_steps, skip_s = 0, 0.0  # this invocation's steps, and its training time after the first PLAN_SKIP
    if resume and (start_epoch >= epochs or global_step >= total_steps):
        logger.warning("checkpoint %s already has %d epochs (asked for %d): nothing to do", out, start_epoch, epochs)
    warmup_steps = int(config.warmup_epochs * steps_per_epoch)
    monitor = CollapseMonitor(config.collapse_warn, "projection")
    feat_monitor = CollapseMonitor(0.0, "backbone")
    bad_files: dict[str, str] = {}
    train_seconds, out_of_time = 0.0, False
    centers: dict[str, Any] | None = None
    fit_seconds = since_fit = 0.0
    best = _best_so_far(out, history) if keep_best and resume else None
    logger.info(
        "training %s on %d files from %s (%s%s%s, %d steps/epoch, epochs %d..%d)",
        config.backbone, len(files), data_dir, device, ", bf16" if cpu_bf16 else "",
        ", channels_last" if channels_last else "", steps_per_epoch,
        start_epoch + 1, epochs,
    )  # fmt: skip
    for epoch in range(start_epoch, epochs):
        if out_of_time or global_step >= total_steps:
            break
        t_epoch = time.perf_counter()
        sampler.set_epoch(epoch)
        aug_gen = torch.Generator().manual_seed(epoch_seed(config.seed, epoch, stream=2))
        model.train()
        loss_sum = torch.zeros((), device=device)
        steps = images_seen = bad_count = 0
        lr = ema = 0.0
        for batch in loader:
            for idx, reason in batch.bad:
                bad_count += 1
                path = str(files[idx])
                if path not in bad_files:
                    logger.warning("skipping unreadable image %s (%s)", path, reason)
                    bad_files[path] = reason
            if batch.images.shape[0] < 2:
                continue
            x = batch.images.to(device, non_blocking=cuda)
            v1, v2 = config.view1(x, aug_gen), config.view2(x, aug_gen)
            if channels_last:
                v1 = v1.contiguous(memory_format=torch.channels_last)
                v2 = v2.contiguous(memory_format=torch.channels_last)
            lr = lr_at(global_step, total_steps, config.lr, config.lr_schedule, warmup_steps)
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=(cuda and config.amp) or cpu_bf16):
                loss, feats, proj = model(v1, v2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema = (
                cosine_ema_rate(global_step, total_steps, config.ema_rate)
                if config.ema_schedule == "cosine"
                else config.ema_rate
            )
            model.update_target(ema)
            monitor.update(proj)
            feat_monitor.update(feats)
            loss_sum += loss.detach()
            steps += 1
            global_step += 1
            images_seen += x.shape[0]
            if progress is not None:
                info = {"epoch": float(epoch + 1)}
                if steps % 10 == 1:
                    info["loss"] = float(loss.item())
                progress(global_step, total_steps, info)
            run_steps += 1
            if time_budget_s is not None:
                elapsed = train_seconds + time.perf_counter() - t_epoch
                if run_steps == PLAN_SKIP:
                    skip_s = elapsed
                elif run_steps > PLAN_SKIP:  # the schedule is planned to end inside the budget
                    total_steps = steps_within_budget(
                        global_step, planned_steps, time_budget_s, elapsed, run_steps - PLAN_SKIP, elapsed - skip_s
                    )
                # the budget first: an epoch's last step can use it up too (with one-step epochs it is the only step)
                if elapsed >= time_budget_s:
                    out_of_time = True
                    logger.info("time budget of %.0f s used up at step %d of %d", time_budget_s, global_step,
                                total_steps)  # fmt: skip
                    break
            if steps >= steps_per_epoch or global_step >= total_steps:  # train_steps can end an epoch early
                break
        if images_seen == 0:
            raise DataError(
                f"no readable image in {data_dir}: all {len(bad_files)} tried file(s) failed to decode "
                f"(first: {next(iter(bad_files), '?')}); fix or remove them"
            )
        collapse, feat_spread = monitor.report(epoch + 1), feat_monitor.report()
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": float(loss_sum.item()) / max(1, steps),
            "steps": steps,
            "images": images_seen,
            "bad_files": bad_count,
            "lr": lr,
            "ema_rate": ema,
            "collapse_score": collapse.score,
            "feature_spread": feat_spread.score,
            "collapse_warning": collapse.collapsed,
            "seconds": time.perf_counter() - t_epoch,
            "images_per_s": images_seen / max(1e-9, time.perf_counter() - t_epoch),
        }
        train_seconds += row["seconds"]
        since_fit += row["seconds"]
        if not np.isfinite(row["loss"]):
            logger.error("epoch %d: loss is %s; lower the learning rate", epoch + 1, row["loss"])
        if time_budget_s is not None:
            row["planned_steps"] = total_steps
        last = out_of_time or epoch + 1 == epochs or global_step >= total_steps
        # the means / read-out are refitted after the last epoch, for the probe, and otherwise only once the
        # training since the last fit took FIT_EVERY times as long as that fit (small folders have short epochs)
        if centers is None or last or probe is not None or since_fit >= FIT_EVERY * fit_seconds:
            t_fit = time.perf_counter()
            centers = _fitted(model, config, center_images, device)
            fit_seconds, since_fit = time.perf_counter() - t_fit, 0.0
            row["fitted"] = center_images is not None
        else:  # this epoch's checkpoint keeps the last fit's means / read-out (the last epoch's are always fresh)
            row["fitted"] = False
        if probe is not None:
            row.update(probe.evaluate(embedder(model, config, device, centers)))
        model.train()
        history.append(row)
        _save(out, config, model, opt, epoch + 1, global_step, data_fp, len(files), history, centers)
        if keep_best and (best is None or row["probe_auc"] > best[1]):  # keep_best implies a probe
            best = (epoch + 1, row["probe_auc"])
            _save(best_path(out), config, model, opt, epoch + 1, global_step, data_fp, len(files), history, centers)
        logger.info("epoch %d/%d %s", epoch + 1, epochs, _summary(row))
    return TrainResult(
        checkpoint=out,
        metrics=history,
        epochs_run=len(history) - start_epoch,
        start_epoch=start_epoch,
        num_files=len(files),
        bad_files=bad_files,
        seconds=time.perf_counter() - t_start,
        best_checkpoint=best_path(out) if best is not None else None,
        best_epoch=best[0] if best is not None else None,
    )


def best_path(out: str | Path) -> Path:
    """Where ``keep_best`` keeps the best epoch's checkpoint: ``run.pt`` -> ``run.best.pt``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.best{out.suffix}")


def _best_so_far(out: Path, history: list[dict[str, Any]]) -> tuple[int, float] | None:
    """On resume, the epoch ``best_path(out)`` holds and its probe AUC (None when there is none yet)."""
    if not best_path(out).is_file():
        return None
    epoch = int(load_checkpoint(best_path(out))["epoch"])
    auc = next((r.get("probe_auc") for r in history if r.get("epoch") == epoch), None)
    return (epoch, float(auc)) if auc is not None else None


def write_untrained(data_dir: str | Path, config: TrainConfig, out: str | Path) -> Path:
    """The untrained twin of a run: the same seed, backbone, sizes and feature centring, and no training step.

    Its weights equal those :func:`train` starts from with this config, so trained vs untrained isolates what
    training added (the floor every quality benchmark reports beside the trained encoder).

    Raises:
        DataError: empty folder (the centring means, when asked for, come from its images).
    """
    out = Path(out)
    device = resolve_device(config.device)
    files = list_images(data_dir)
    torch.manual_seed(config.seed)
    model = BYOL(config.backbone, config.projection_dim, config.hidden_dim, config.backbone_weights).to(device)
    opt = build_optimizer(model.online_parameters(), config.optimizer, config.lr, config.momentum, config.weight_decay)
    centers = _fitted(model, config, center_subset(files, config) if needs_fit_images(config) else None, device)
    _save(out, config, model, opt, 0, 0, fingerprint(files, data_dir), len(files), [], centers)
    return out


def _fitted(model: BYOL, config: TrainConfig, images: np.ndarray | None, device: torch.device
            ) -> dict[str, Any] | None:  # fmt: skip
    """What the checkpoint holds besides the weights, fitted on unlabeled training images: the centring means
    and / or the texture read-out (``None`` when the config asks for neither)."""
    if images is None:
        return None
    fitted: dict[str, Any] = feature_means(model, config, images, device) if config.center_features else {}
    if config.representation == "texture":
        fitted.update(texture_state(model, config, images, device))
    return fitted


def _summary(row: dict[str, Any]) -> str:
    parts = [f"loss={row['loss']:.4f}", f"collapse={row['collapse_score']:.3f}", f"bad_files={row['bad_files']}"]
    for key in ("probe_pair_acc", "probe_auc", "probe_knn_acc"):
        if key in row:
            parts.append(f"{key.removeprefix('probe_')}={row[key]:.3f}")
    return " ".join(parts)


def _save(
    out: Path, config: TrainConfig, model: BYOL, opt: torch.optim.Optimizer, epoch: int, step: int,
    data_fp: str, num_files: int, history: list[dict[str, Any]], centers: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    state = {part: getattr(model, part).state_dict() for part in BYOL.PARTS}
    payload = build_payload(
        config=config.to_dict(), state=state, epoch=epoch, global_step=step, optimizer=opt.state_dict(),
        data_fingerprint=data_fp, num_files=num_files, metrics=history,
    )  # fmt: skip
    payload.update(centers or {})
    save_checkpoint(out, payload)
    write_metrics(out, config.to_dict(), history)


def _restore(
    out: Path, config: TrainConfig, model: BYOL, opt: torch.optim.Optimizer, data_fp: str
) -> tuple[int, int, list[dict[str, Any]]]:
    payload = load_checkpoint(out)
    saved = payload["config"]
    for name in _MODEL_FIELDS:
        if saved.get(name) != getattr(config, name):
            raise CheckpointError(
                f"cannot resume from {out}: it was trained with {name}={saved.get(name)!r}, this run has "
                f"{getattr(config, name)!r}; use the same value or a new --out"
            )
    try:
        for part in BYOL.PARTS:
            getattr(model, part).load_state_dict(payload["state"][part], strict=True)
        if payload.get("optimizer") is not None:
            opt.load_state_dict(payload["optimizer"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"cannot resume from {out}: its weights do not fit this model ({exc})") from exc
    if payload.get("data_fingerprint") and payload["data_fingerprint"] != data_fp:
        logger.warning("resuming %s on a different file list than it was trained on", out)
    epoch = int(payload["epoch"])
    logger.info("resuming from %s at epoch %d", out, epoch + 1)
    return epoch, int(payload.get("global_step", 0)), list(payload.get("metrics", []))
