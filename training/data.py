"""Training data: a folder of images searched recursively, decoded and resized to ``uint8`` on CPU workers.

A file that fails to decode never stops training: the loader returns it as a *bad* item with its reason, the
trainer logs a warning naming it and counts it in the epoch summary.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from training.errors import DataError
from training.pixels import IMAGE_SUFFIXES, PixelError, model_pixels

logger = logging.getLogger(__name__)


def list_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive, hidden files skipped), sorted for reproducibility.

    Raises:
        DataError: ``root`` is not a folder, or holds no file with an image suffix.
    """
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"training data folder {base} does not exist or is not a folder")
    files, ignored = [], 0
    for p in sorted(base.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(base).parts):
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES:
            files.append(p)
        else:
            ignored += 1
    if ignored:
        logger.info("ignored %d non-image file(s) under %s", ignored, base)
    if not files:
        raise DataError(
            f"no image files under {base} (looked recursively for {', '.join(sorted(IMAGE_SUFFIXES))}): "
            "point `histoquery train` at a folder of images"
        )
    return files


def fingerprint(files: Sequence[Path], root: str | Path) -> str:
    """SHA-256 over the sorted relative paths and sizes of the training files (stored in checkpoints)."""
    h = hashlib.sha256()
    base = Path(root)
    for p in files:
        h.update(f"{p.relative_to(base).as_posix()}\t{p.stat().st_size}\n".encode())
    return h.hexdigest()


class ImageFiles(Dataset[tuple[torch.Tensor, int, str]]):
    """Decodes one file to a ``uint8`` tensor ``(3, S, S)`` with :func:`training.pixels.model_pixels`.

    Items are ``(image, index, error)``; on failure ``image`` is zeros and ``error`` says why (else ``""``).

    With ``cache_bytes > 0`` the decoded images (and the failures' reasons) are kept in memory, up to that many
    bytes of pixels, so that later epochs do not decode them again (the first files to be read fill it; the rest
    are decoded every epoch). The cache lives in the process that reads the items: use it with ``num_workers=0``,
    where training on a CPU decodes in the training process itself.
    """

    def __init__(self, files: Sequence[Path], size: int, cache_bytes: int = 0) -> None:
        self.files = list(files)
        self.size = size
        self.cache_bytes = cache_bytes
        self._cache: dict[int, tuple[torch.Tensor, str]] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        hit = self._cache.get(index)
        if hit is not None:
            return hit[0], index, hit[1]
        path = self.files[index]
        try:
            arr, _ = model_pixels(path, self.size)  # the one decoder: same pixels as ingestion and queries
            img, err = torch.from_numpy(arr), ""
        except PixelError as exc:
            img, err = torch.zeros(3, self.size, self.size, dtype=torch.uint8), f"{exc.stage}: {exc.reason}"
        if self._cached_bytes + img.numel() <= self.cache_bytes:  # collate stacks (copies) what it is given
            self._cache[index] = (img, err)
            self._cached_bytes += img.numel()
        return img, index, err


@dataclass
class Batch:
    """A collated batch: the good images and the files that failed (path index, reason)."""

    images: torch.Tensor  # (n_ok, 3, S, S) uint8
    bad: list[tuple[int, str]]

    def pin_memory(self) -> Batch:
        self.images = self.images.pin_memory()
        return self


def collate(items: Sequence[tuple[torch.Tensor, int, str]]) -> Batch:
    """Stack the decoded images, keep the failures apart."""
    good = [img for img, _, err in items if not err]
    bad = [(idx, err) for _, idx, err in items if err]
    if good:
        images = torch.stack(good)
    else:
        size = items[0][0].shape[-1] if items else 0
        images = torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return Batch(images=images, bad=bad)


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled index batches, reproducible per ``(seed, epoch)``; the last partial batch is dropped when at least
    one full batch exists (and kept otherwise, so a tiny folder still trains)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream=1))
        order = torch.randperm(self.n, generator=g).tolist()
        if self.n < self.batch_size:
            yield order
            return
        for i in range(len(self)):
            yield order[i * self.batch_size : (i + 1) * self.batch_size]


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A distinct, reproducible 63-bit seed per (seed, epoch, stream)."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def load_uint8(files: Sequence[Path], size: int) -> tuple[np.ndarray, list[int]]:
    """Decode files eagerly (for small probe sets): ``((N_ok, 3, S, S) uint8, indices of the good files)``.

    Files that fail are logged and left out.
    """
    ds = ImageFiles(files, size)
    arrays, kept = [], []
    for i in range(len(ds)):
        img, _, err = ds[i]
        if err:
            logger.warning("skipping unreadable image %s (%s)", files[i], err)
            continue
        arrays.append(img.numpy())
        kept.append(i)
    if not arrays:
        return np.zeros((0, 3, size, size), dtype=np.uint8), kept
    return np.stack(arrays), kept
