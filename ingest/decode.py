"""Decode and validate one image file into an 8-bit RGB :class:`PIL.Image.Image`.

Every way an input can be unusable ends in :class:`~ingest.errors.BadImageError` naming the file, the reason
and the stage ('read': cannot read the bytes, 'decode': not a decodable image, 'validate': decodes but is not
usable). Modes are normalised: EXIF orientation applied; palette, CMYK, YCbCr, LAB and 1-bit converted; alpha
composited on white; 16-bit and 32-bit integer / float greyscale scaled to 8 bits; multi-frame files use frame 0.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ingest.errors import BadImageError

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 20_000 * 20_000
DEFAULT_MIN_SIDE = 8


@dataclass(frozen=True)
class DecodedImage:
    """A decoded, validated image with the hash of its file bytes.

    Attributes:
        image: 8-bit RGB image.
        content_hash: sha256 hex digest of the file bytes (the identity used for exactly-once storage).
        width: width after EXIF orientation.
        height: height after EXIF orientation.
    """

    image: Image.Image
    content_hash: str
    width: int
    height: int


def read_bytes(path: str | Path) -> bytes:
    """Read a file's bytes, turning every OS error into a permanent :class:`BadImageError` (stage 'read').

    Raises:
        BadImageError: missing, not a file, unreadable, or zero bytes.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise BadImageError(p, "file does not exist (check the path)", stage="read") from exc
    except IsADirectoryError as exc:
        raise BadImageError(p, "is a directory, not an image file", stage="read") from exc
    except PermissionError as exc:
        raise BadImageError(p, "permission denied: make the file readable by the ingest worker", stage="read") from exc
    except OSError as exc:
        raise BadImageError(p, f"cannot read file: {exc.strerror or exc}", stage="read") from exc
    if not data:
        raise BadImageError(p, "zero-byte file (empty)", stage="read")
    return data


def content_hash(data: bytes) -> str:
    """sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale a 16/32-bit integer or float single-channel array to uint8."""
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        hi = float(finite.max()) if finite.size else 1.0
        scale = 1.0 if hi <= 1.0 else hi
        return np.clip(np.nan_to_num(arr) / scale * 255.0, 0, 255).astype(np.uint8)
    hi = int(arr.max()) if arr.size else 0
    if mode.startswith("I;16") or hi <= 65535:
        return (np.clip(arr, 0, 65535).astype(np.uint32) // 257).astype(np.uint8)
    return np.clip(arr.astype(np.float64) / hi * 255.0, 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha composited on white).

    Args:
        image: a loaded image of any mode.

    Returns:
        An ``RGB`` image of the same size.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("I", "F") or mode.startswith("I;16"):
        arr = _to_8bit(np.asarray(image), mode)
        return Image.fromarray(arr, mode="L").convert("RGB")
    return image.convert("RGB")


def decode_bytes(
    data: bytes, path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE
) -> Image.Image:
    """Decode image bytes into a validated 8-bit RGB image.

    Args:
        data: the file's bytes (non-empty).
        path: the file the bytes came from (named in errors).
        max_pixels: refuse images with more pixels than this (decompression bombs); checked from the header,
            before any pixel is decoded.
        min_side: refuse images whose shorter side is below this many pixels.

    Returns:
        RGB image, EXIF orientation applied.

    Raises:
        BadImageError: not an image, truncated / corrupt data, too many pixels, too small.
    """
    try:
        with warnings.catch_warnings():
            # Our own limit (max_pixels) is checked below from the header; Pillow's global hard limit
            # (2 x Image.MAX_IMAGE_PIXELS) still applies on top and is reported the same way.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise BadImageError(
            path, f"decompression bomb: pixel count exceeds the limit ({exc})", stage="validate"
        ) from exc
    except UnidentifiedImageError as exc:
        raise BadImageError(path, "not a recognised image format (is it really an image?)", stage="decode") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadImageError(path, f"cannot parse image header: {exc}", stage="decode") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise BadImageError(
            path,
            f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} "
            "(raise HISTOQUERY_MAX_IMAGE_PIXELS, or ingest it as a slide)",
            stage="validate",
        )
    if min(width, height) < min_side:
        raise BadImageError(path, f"{width}x{height} is too small (shorter side < {min_side} px)", stage="validate")
    try:
        image.seek(0)
        image.load()
        oriented: Image.Image = ImageOps.exif_transpose(image) or image
        return to_rgb(oriented)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadImageError(path, f"truncated or corrupt image data ({exc})", stage="decode") from exc


def load_image(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE
) -> Image.Image:
    """Read, decode and validate one image file.

    Args:
        path: image file (JPEG, PNG, TIFF, BMP, ... anything Pillow decodes).
        max_pixels: decompression-bomb limit (``Settings.max_image_pixels``).
        min_side: minimum shorter side in pixels.

    Returns:
        8-bit RGB image.

    Raises:
        BadImageError: naming the file and the reason.
    """
    return decode_bytes(read_bytes(path), path, max_pixels=max_pixels, min_side=min_side)


def load_and_hash(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE
) -> DecodedImage:
    """Like :func:`load_image` but also returns the sha256 of the file bytes (read once)."""
    data = read_bytes(path)
    digest = content_hash(data)
    image = decode_bytes(data, path, max_pixels=max_pixels, min_side=min_side)
    return DecodedImage(image=image, content_hash=digest, width=image.width, height=image.height)


def is_probably_image(path: str | Path) -> bool:
    """Whether a file's extension is one the folder walker picks up (see :data:`IMAGE_EXTENSIONS`)."""
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".jp2", ".ppm"})
