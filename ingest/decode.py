"""Decode and validate one image file for ingestion: :mod:`training.pixels` (the one decoder) in ingest's errors.

Every way an input can be unusable ends in :class:`~ingest.errors.BadImageError` naming the file, the reason
and the stage ('read': cannot read the bytes, 'decode': not a decodable image, 'validate': decodes but is not
usable). What the decoder does (bounded header read, pixel limit and decode memory budget before decoding, EXIF,
alpha on white, 16-bit scaling, CMYK / palette) is documented in :mod:`training.pixels`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from ingest.errors import BadImageError
from training.pixels import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    IMAGE_SUFFIXES,
    IMAGE_TYPES,
    DecodeBudget,
    PixelError,
    decode_with,
    read_failure,
    to_rgb,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_SIDE",
    "IMAGE_SUFFIXES",
    "IMAGE_TYPES",
    "decode_bytes",
    "file_hash",
    "load_image",
    "model_input",
    "to_rgb",
]

T = TypeVar("T")


def _bad(exc: PixelError, path: str | Path) -> BadImageError:
    return BadImageError(path, exc.reason, stage=exc.stage)


def file_hash(path: str | Path) -> str:
    """sha256 hex digest of a file, read in a stream (constant memory whatever the file's size).

    Raises:
        BadImageError: missing, not a regular file, unreadable, or zero bytes (stage 'read').
    """
    import stat

    p = str(path)
    try:
        with open(p, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise BadImageError(p, "not a regular file", stage="read")
            if st.st_size == 0:
                raise BadImageError(p, "zero-byte file (empty)", stage="read")
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except BadImageError:
        raise
    except (OSError, ValueError) as exc:
        raise BadImageError(p, read_failure(exc), stage="read") from exc


def _decode(
    source: str | Path | bytes,
    path: str | Path,
    then: Callable[[Image.Image], T],
    max_pixels: int,
    min_side: int,
    budget: DecodeBudget | None,
) -> T:
    try:
        return decode_with(source, then, name=path, max_pixels=max_pixels, min_side=min_side, budget=budget)
    except PixelError as exc:
        raise _bad(exc, path) from exc


def decode_bytes(
    data: bytes,
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    budget: DecodeBudget | None = None,
) -> Image.Image:
    """Decode a file's bytes (e.g. an upload) into a validated 8-bit RGB image.

    Raises:
        BadImageError: not an image, truncated / corrupt data, too many pixels, too small, over the budget.
    """
    return _decode(data, path, lambda rgb: rgb, max_pixels, min_side, budget)


def load_image(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    budget: DecodeBudget | None = None,
) -> Image.Image:
    """Read, decode and validate one image file (header from a bounded read, never the whole file up front).

    Args:
        path: image file (JPEG, PNG, TIFF, BMP, ... anything Pillow decodes).
        max_pixels: decompression-bomb limit (``Settings.max_image_pixels``).
        min_side: minimum shorter side in pixels.
        budget: decode memory budget (default: the process's).

    Returns:
        8-bit RGB image.

    Raises:
        BadImageError: naming the file and the reason.
    """
    return _decode(path, path, lambda rgb: rgb, max_pixels, min_side, budget)


def model_input(
    path: str | Path,
    preprocess: Callable[[Image.Image], np.ndarray],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    budget: DecodeBudget | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode a file and preprocess it inside its budget reservation: ``(model input, (width, height))``.

    Raises:
        BadImageError: naming the file and the reason.
    """
    return _decode(path, path, lambda rgb: (preprocess(rgb), rgb.size), max_pixels, min_side, budget)
