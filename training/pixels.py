"""The one decoder: a file, an upload or a slide tile becomes 8-bit RGB pixels, the same way everywhere.

Training (:class:`training.data.ImageFiles`), ingestion (``ingest.decode`` / ``ingest.pipeline``) and queries
(``retrieval.resolve``, the dashboard's uploads) all call :func:`load_rgb` / :func:`model_pixels`, so one file gives
bit-identical model input wherever it enters. What it does:

- the header is sniffed from a bounded read (:data:`HEADER_READ_LIMIT`): a 2 GB file named ``.png`` is never read
  whole to find out that it is not an image;
- the image's size is checked against ``max_pixels`` (a per-call argument: Pillow's process-global
  ``Image.MAX_IMAGE_PIXELS`` is never changed) and ``min_side`` *before* any pixel is decoded;
- the decode holds a reservation of its estimated memory on a per-process :class:`DecodeBudget`, so 16 decode
  threads on 16 large files wait for each other instead of multiplying the peak; a file that alone needs more than
  the whole budget is refused with a reason naming the sizes;
- modes are normalised: EXIF orientation applied; palette, CMYK, YCbCr, LAB and 1-bit converted; alpha composited
  on white; 16-bit and 32-bit integer / float greyscale scaled to 8 bits; multi-frame files use frame 0.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from training.errors import TrainingError
from training.preprocess import resize_center_crop

#: File suffixes treated as images (lower case; compare with ``path.suffix.lower()``), in the order users see them.
#: Their one home: training's folder reader, ingest's folder walker, evaluation folders, the demo and the dashboard's
#: upload box all use this list, so a file one of them accepts is never ignored by another.
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".jp2", ".ppm", ".pgm",
)  # fmt: skip
#: The same list without the dots, as file pickers take it (``st.file_uploader(type=...)``).
IMAGE_TYPES: tuple[str, ...] = tuple(suffix.removeprefix(".") for suffix in IMAGE_SUFFIXES)
DEFAULT_MAX_PIXELS = 20_000 * 20_000
DEFAULT_MIN_SIDE = 8
#: At most this many bytes are read to identify a file and parse its header.
HEADER_READ_LIMIT = 16 * 1024 * 1024
#: Default per-process decode memory budget (``HISTOQUERY_DECODE_MEMORY_MB`` in ingestion settings).
DEFAULT_BUDGET_BYTES = 512 * 1024 * 1024

Source = str | Path | bytes | BinaryIO
T = TypeVar("T")


class PixelError(TrainingError):
    """A file / upload cannot be turned into pixels.

    Attributes:
        source: the file (or upload name) it is about.
        reason: a short human reason ("zero-byte file", "truncated or corrupt image data", ...).
        stage: 'read' (cannot read the bytes), 'decode' (not a decodable image) or 'validate' (decodes but unusable).
    """

    def __init__(self, source: object, reason: str, stage: str = "decode") -> None:
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason
        self.stage = stage


class DecodeBudget:
    """Bytes of decoded pixels one process may hold at once; decodes wait for their share.

    Args:
        max_bytes: the budget. A single decode estimated above it is refused (it could never fit).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"decode memory budget must be positive, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.in_use = 0
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int, source: object) -> Iterator[None]:
        """Hold ``nbytes`` of the budget while the block runs (waits until they are free).

        Raises:
            PixelError: ``nbytes`` exceeds the whole budget (stage 'validate').
        """
        if nbytes > self.max_bytes:
            raise PixelError(
                source,
                f"needs about {nbytes / 2**20:.0f} MiB to decode, more than the decode memory budget of "
                f"{self.max_bytes / 2**20:.0f} MiB (raise HISTOQUERY_DECODE_MEMORY_MB, or convert it to a "
                "pyramidal TIFF and ingest it as a slide)",
                stage="validate",
            )
        with self._cond:
            self._cond.wait_for(lambda: self.in_use + nbytes <= self.max_bytes)
            self.in_use += nbytes
        try:
            yield
        finally:
            if nbytes >= TRIM_BYTES:
                _return_freed_memory()
            with self._cond:
                self.in_use -= nbytes
                self._cond.notify_all()


_PROCESS_BUDGETS: dict[int, DecodeBudget] = {}
_PROCESS_BUDGETS_LOCK = threading.Lock()


def read_failure(exc: OSError | ValueError) -> str:
    """Why a file could not be opened or read, in the user's words (one text for every reader of files)."""
    if isinstance(exc, FileNotFoundError):
        return "file does not exist (check the path)"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not an image file"
    if isinstance(exc, PermissionError):
        return "permission denied: make the file readable by the process that ingests or queries it"
    if isinstance(exc, ValueError):
        return f"not a valid file path ({exc})"
    return f"cannot read file: {exc.strerror or exc}"


def process_budget(max_bytes: int = DEFAULT_BUDGET_BYTES) -> DecodeBudget:
    """The process's shared :class:`DecodeBudget` of ``max_bytes`` (one per size, created on first use)."""
    with _PROCESS_BUDGETS_LOCK:
        budget = _PROCESS_BUDGETS.get(max_bytes)
        if budget is None:
            budget = _PROCESS_BUDGETS[max_bytes] = DecodeBudget(max_bytes)
        return budget


class _LimitedRaw(io.RawIOBase):
    """A raw reader over a binary file that refuses to serve more than ``limit`` bytes (None = no limit)."""

    def __init__(self, fh: BinaryIO, limit: int | None) -> None:
        self._fh = fh
        self.limit = limit
        self.served = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.limit is not None and self.served >= self.limit:
            raise _HeaderTooLong
        want = len(buffer) if self.limit is None else min(len(buffer), self.limit - self.served)
        data = self._fh.read(want)
        n = len(data)
        buffer[:n] = data
        self.served += n
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()


class _HeaderTooLong(OSError):
    """The header was not found within :data:`HEADER_READ_LIMIT` bytes."""


def _open_binary(source: Source, name: object) -> BinaryIO:
    if isinstance(source, bytes):
        if not source:
            raise PixelError(name, "zero-byte file (empty)", stage="read")
        return io.BytesIO(source)
    if not isinstance(source, str | Path):
        return source
    try:
        fh = open(source, "rb")  # noqa: SIM115 - closed by the caller
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
        raise PixelError(name, read_failure(exc), stage="read") from exc
    st = os.fstat(fh.fileno())
    if not _is_regular(st.st_mode):
        fh.close()
        raise PixelError(name, "not a regular file", stage="read")
    if st.st_size == 0:
        fh.close()
        raise PixelError(name, "zero-byte file (empty)", stage="read")
    return fh


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def decode_cost(mode: str, width: int, height: int) -> int:
    """Estimated peak bytes of decoding a ``mode`` image of ``width x height`` to RGB (source, copies, result)."""
    bands = Image.getmodebands(mode) if mode in Image.MODES else 4
    depth = 2 if mode.startswith("I;16") else 4 if mode in ("I", "F") else 1
    extra = 12 if mode in ("RGBA", "LA", "PA", "RGBa", "La", "P") else 13 if depth > 1 else 0
    return int(width) * int(height) * (2 * bands * depth + 3 + extra)


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


def decode_with(
    source: Source,
    then: Callable[[Image.Image], T],
    *,
    name: object | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    budget: DecodeBudget | None = None,
) -> T:
    """Decode ``source`` to validated RGB and apply ``then`` to it while its memory is reserved on ``budget``.

    Args:
        source: a file path, the bytes of a file (an upload), or an open binary file.
        then: what to do with the RGB image (e.g. resize it to the model input); its result is returned.
        name: what errors call the source (default: the path, or ``<upload>``).
        max_pixels: refuse images with more pixels than this, from the header, before decoding.
        min_side: refuse images whose shorter side is below this.
        budget: the decode memory budget (default: the process's :func:`process_budget`).

    Raises:
        PixelError: unreadable, not an image, truncated / corrupt, too many pixels, too small, over the budget.
    """
    label = name if name is not None else (source if isinstance(source, str | Path) else "<upload>")
    fh = _open_binary(source, label)
    raw = _LimitedRaw(fh, HEADER_READ_LIMIT)
    try:
        stream = io.BufferedReader(raw, buffer_size=64 * 1024)
        try:
            with warnings.catch_warnings():
                # Our own limit (max_pixels) is checked below from the header; Pillow's global hard limit
                # (2 x Image.MAX_IMAGE_PIXELS) still applies on top and is reported the same way.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(stream)
        except Image.DecompressionBombError as exc:
            raise PixelError(label, f"decompression bomb: pixel count exceeds the limit ({exc})", "validate") from exc
        except _HeaderTooLong as exc:
            raise PixelError(
                label, f"not a recognised image format (no image header in its first {HEADER_READ_LIMIT} bytes)"
            ) from exc
        except UnidentifiedImageError as exc:
            raise PixelError(label, "not a recognised image format (is it really an image?)") from exc
        except (OSError, ValueError, SyntaxError) as exc:
            raise PixelError(label, f"cannot parse image header: {exc}") from exc
        width, height = image.size
        if width * height > max_pixels:
            raise PixelError(
                label,
                f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} "
                "(raise HISTOQUERY_MAX_IMAGE_PIXELS, or ingest it as a slide)",
                stage="validate",
            )
        if min(width, height) < min_side:
            raise PixelError(label, f"{width}x{height} is too small (shorter side < {min_side} px)", "validate")
        with (budget or process_budget()).reserve(decode_cost(image.mode, width, height), label):
            raw.limit = None
            result = _finish(image, then, label)  # its full-size intermediates are freed when it returns ...
            image.close()  # ... and the decoded source here, inside the reservation
        return result
    finally:
        if isinstance(source, str | Path | bytes):
            fh.close()


def _finish(image: Image.Image, then: Callable[[Image.Image], T], label: object) -> T:
    try:
        image.seek(0)
        image.load()
        oriented: Image.Image = ImageOps.exif_transpose(image) or image
        rgb = to_rgb(oriented)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise PixelError(label, f"truncated or corrupt image data ({exc})") from exc
    return then(rgb)


def _return_freed_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Each decode thread allocates from its own glibc arena, and freed image blocks stay in those arenas: without
    this, 16 threads decoding large images one after another (within the budget) still grow the RSS to 16 images
    (measured: 2.5 GiB over the model for 8 x 6000^2 PNGs on 16 threads, 0.4 GiB with it; BENCHMARKS.md).
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None
#: Reservations at least this large give their memory back to the OS when released.
TRIM_BYTES = 32 * 1024 * 1024


def load_rgb(source: Source, **kwargs: object) -> Image.Image:
    """Decode ``source`` into a validated 8-bit RGB image (see :func:`decode_with` for the arguments).

    Raises:
        PixelError: naming the source and the reason.
    """
    return decode_with(source, lambda rgb: rgb, **kwargs)  # type: ignore[arg-type]


def model_pixels(source: Source, size: int, **kwargs: object) -> tuple[np.ndarray, tuple[int, int]]:
    """The model input of a file: ``((3, S, S) uint8, (width, height) after EXIF orientation)``.

    The full-size image never outlives its budget reservation: it is resized inside it.

    Raises:
        PixelError: naming the source and the reason.
    """
    return decode_with(source, lambda rgb: (resize_center_crop(rgb, size), rgb.size), **kwargs)  # type: ignore[arg-type]


def header_size(path: str | Path) -> tuple[int, int] | None:
    """``(width, height)`` from a file's header (bounded read), or None when it has no readable image header.

    Raises:
        Image.DecompressionBombError: over Pillow's hard limit (callers treat it as "very large").
    """
    try:
        fh = _open_binary(path, path)
    except PixelError:
        return None
    raw = _LimitedRaw(fh, HEADER_READ_LIMIT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BufferedReader(raw, buffer_size=64 * 1024)) as image:
                return int(image.width), int(image.height)
    except Image.DecompressionBombError:
        raise
    except Exception:  # noqa: BLE001 - any unreadable header: the decoder names the reason later
        return None
    finally:
        fh.close()
