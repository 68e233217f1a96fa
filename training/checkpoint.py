"""Checkpoint format: ``torch.save`` of a dict of tensors, state dicts and plain JSON-able values.

Layout (``format_version`` 1)::

    {"format": "histoquery-byol", "format_version": 1,
     "config": {...TrainConfig.to_dict()...},
     "state": {"online_encoder": sd, "online_projector": sd, "predictor": sd, "target_encoder": sd,
               "target_projector": sd},
     "optimizer": sd | None, "epoch": int (epochs completed), "global_step": int,
     "versions": {"histoquery", "torch", "torchvision", "python"}, "data_fingerprint": str, "num_files": int,
     "metrics": [per-epoch dicts], "created_at": ISO time}

Loading uses ``weights_only=True``: nothing arbitrary is unpickled. Writes are atomic (temp file + ``os.replace``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torchvision

from training.errors import CheckpointError

FORMAT = "histoquery-byol"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "config", "state", "epoch")


def library_versions() -> dict[str, str]:
    """Versions recorded in every checkpoint."""
    try:
        ours = metadata.version("histoquery")
    except metadata.PackageNotFoundError:
        ours = "unknown"
    return {
        "histoquery": ours,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def build_payload(
    *,
    config: dict[str, Any],
    state: dict[str, dict[str, torch.Tensor]],
    epoch: int,
    global_step: int = 0,
    optimizer: dict[str, Any] | None = None,
    data_fingerprint: str = "",
    num_files: int = 0,
    metrics: list[dict[str, Any]] | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """Assemble a checkpoint dict (tensors moved to CPU)."""
    cpu_state = {part: {k: v.detach().cpu() for k, v in sd.items()} for part, sd in state.items()}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config,
        "state": cpu_state,
        "optimizer": optimizer,
        "epoch": int(epoch),
        "global_step": int(global_step),
        "versions": library_versions(),
        "data_fingerprint": data_fingerprint,
        "num_files": int(num_files),
        "metrics": list(metrics or []),
        "created_at": created_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically: a temp file in the same folder, fsync, then rename over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; workers running as another user must read it
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint (on CPU, ``weights_only=True``).

    Raises:
        CheckpointError: missing, unreadable / corrupt, or not a HistoQuery BYOL checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist: train one with `histoquery train DATA_DIR`")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True, mmap=True)  # lazy: read only what is used
    except Exception as exc:  # corrupt zip, truncated file, pickled objects refused by weights_only ...
        raise CheckpointError(
            f"checkpoint {p} is corrupt, truncated or not a HistoQuery checkpoint ({type(exc).__name__}); "
            "re-train or restore the file"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a HistoQuery BYOL checkpoint (no format={FORMAT!r} marker)")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {p} lacks {', '.join(missing)}: it is incomplete, re-train")
    if int(payload["format_version"]) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {p} has format_version {payload['format_version']}, this HistoQuery reads up to "
            f"{FORMAT_VERSION}: upgrade histoquery"
        )
    return payload


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
