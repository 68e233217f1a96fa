"""Whole-slide images: open (OpenSlide, or a plain-image fallback), mpp, tissue mask, tile grid, tile pixels.

Tile coordinates are level-0 pixels (as OpenSlide's ``read_region``); ``size`` is the tile's extent in level-0
pixels and ``level`` the pyramid level its pixels are read from; the tile is resized to the requested output size.
Pixels are never cached: :func:`read_tile` re-reads them from the slide (see docs/ingest.md).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from PIL import Image

from ingest.errors import SlideError

if TYPE_CHECKING:
    from training.pixels import DecodeBudget

logger = logging.getLogger(__name__)

DEFAULT_MPP = 0.5
UNSUPPORTED = (
    "unsupported slide format: OpenSlide does not recognise it and it is not a plain image "
    "(supported: SVS, NDPI, MRXS, SCN, VMS, BIF, DICOM, pyramidal TIFF, or plain TIFF/PNG/JPEG)"
)
MppSource = Literal["metadata", "default", "user"]


class SlideReader(Protocol):
    """What ingest uses of a slide reader: the part of ``openslide.OpenSlide`` that :class:`PlainImageSlide` mirrors.

    Typed here (OpenSlide ships no types), so mypy checks every use of a reader in ingest.
    """

    @property
    def properties(self) -> Mapping[str, str]: ...
    @property
    def level_count(self) -> int: ...
    @property
    def dimensions(self) -> tuple[int, int]: ...
    @property
    def level_downsamples(self) -> Sequence[float]: ...
    def get_best_level_for_downsample(self, downsample: float) -> int: ...
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image: ...
    def get_thumbnail(self, size: tuple[int, int]) -> Image.Image: ...
    def close(self) -> None: ...


class PlainImageSlide:
    """A one-level slide over a plain (large) TIFF / PNG / JPEG held in memory: the fallback reader.

    Mirrors the part of ``openslide.OpenSlide`` that ingest uses.
    """

    def __init__(self, path: str | Path, max_pixels: int, budget: DecodeBudget | None = None) -> None:
        from training.pixels import PixelError, load_rgb

        self._path = str(path)
        try:
            # the one decoder: pixel limit from the header and the decode memory budget before any pixel is decoded
            self._image = load_rgb(path, max_pixels=max_pixels, min_side=1, budget=budget)
        except PixelError as exc:
            if exc.stage == "decode" and "not a recognised image format" in exc.reason:
                raise SlideError(path, UNSUPPORTED, stage="read") from exc
            raise SlideError(path, f"{exc.reason} (plain-image fallback reader)", stage="read") from exc
        self.properties: dict[str, str] = {"openslide.vendor": "plain-image"}
        self.level_count = 1
        self.dimensions: tuple[int, int] = self._image.size
        self.level_dimensions = (self._image.size,)
        self.level_downsamples: tuple[float, ...] = (1.0,)

    def get_best_level_for_downsample(self, downsample: float) -> int:
        return 0

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
        x, y = location
        return self._image.crop((x, y, x + size[0], y + size[1]))

    def get_thumbnail(self, size: tuple[int, int]) -> Image.Image:
        thumb = self._image.copy()
        thumb.thumbnail(size)
        return thumb

    def close(self) -> None:
        self._image.close()


def open_slide(
    path: str | Path, *, max_pixels: int = 40_000 * 40_000, budget: DecodeBudget | None = None
) -> SlideReader:
    """Open a whole-slide image with OpenSlide, or a plain large image with the fallback reader.

    Args:
        path: slide file (SVS, NDPI, MRXS, pyramidal TIFF, ... or a plain TIFF / PNG / JPEG).
        max_pixels: limit for the in-memory fallback reader.
        budget: decode memory budget of the fallback reader (default: the process's).

    Returns:
        An ``openslide.OpenSlide`` or :class:`PlainImageSlide`.

    Raises:
        SlideError: missing / unreadable file, or a format neither reader supports.
    """
    import openslide

    p = Path(path)
    if not p.exists():
        raise SlideError(p, "slide file does not exist (check the path)", stage="read")
    if not os.access(p, os.R_OK):
        raise SlideError(p, "permission denied: make the slide readable by the ingest worker", stage="read")
    try:
        fmt = openslide.OpenSlide.detect_format(str(p))
    except openslide.OpenSlideError as exc:
        raise SlideError(p, f"cannot read slide: {exc}", stage="read") from exc
    if fmt is not None:
        try:
            return openslide.OpenSlide(str(p))
        except openslide.OpenSlideError as exc:
            raise SlideError(p, f"OpenSlide cannot open this {fmt} slide: {exc}", stage="read") from exc
    return PlainImageSlide(p, max_pixels, budget)


@dataclass(frozen=True)
class SlideInfo:
    """Metadata of a slide as stored in the ``slides`` table."""

    path: str
    format: str
    width: int
    height: int
    level_count: int
    mpp_x: float
    mpp_y: float
    magnification: float | None
    mpp_source: MppSource


def slide_info(
    reader: SlideReader, path: str | Path, *, mpp: float | None = None, default_mpp: float = DEFAULT_MPP
) -> SlideInfo:
    """Read a slide's size and resolution; the mpp comes from the user, the metadata or a stated default.

    Args:
        reader: an open slide.
        path: its path (for messages).
        mpp: user-given microns per pixel at level 0 (wins over metadata).
        default_mpp: used, with a warning, when neither the user nor the metadata give one.
    """
    props = reader.properties
    mag_raw = props.get("openslide.objective-power") or props.get("aperio.AppMag")
    magnification = _float(mag_raw)
    mpp_x, mpp_y = _float(props.get("openslide.mpp-x")), _float(props.get("openslide.mpp-y"))
    source: MppSource
    if mpp is not None:
        mpp_x = mpp_y = float(mpp)
        source = "user"
    elif mpp_x and mpp_y:
        source = "metadata"
    elif magnification:
        mpp_x = mpp_y = 10.0 / magnification
        source = "metadata"
        logger.warning("%s: no mpp in metadata; derived %.3f mpp from %gx objective power", path, mpp_x, magnification)
    else:
        mpp_x = mpp_y = default_mpp
        source = "default"
        logger.warning(
            "%s: no microns-per-pixel in the slide metadata: assuming %.3f mpp (pass --mpp to set it)",
            path,
            default_mpp,
        )
    width, height = reader.dimensions
    return SlideInfo(
        path=str(path),
        format=str(props.get("openslide.vendor", "unknown")),
        width=int(width),
        height=int(height),
        level_count=int(reader.level_count),
        mpp_x=float(mpp_x),  # type: ignore[arg-type]
        mpp_y=float(mpp_y),  # type: ignore[arg-type]
        magnification=magnification,
        mpp_source=source,
    )


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


# --- tissue mask -------------------------------------------------------------------------------------------


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of uint8 values (between-class variance maximised over 256 bins)."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0.0
    bins = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    w1 = total - w0
    m0 = np.cumsum(hist * bins)
    mean_all = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_all * w0 - m0 * total) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = 0
    return float(np.argmax(between))


#: Saturation (0-255) at or below which a pixel is never tissue: the floor of the tile mask's Otsu threshold.
MIN_TISSUE_SATURATION = 20


def saturation(image: Image.Image) -> np.ndarray:
    """HSV saturation (H, W) uint8 of an image: the quantity the tissue mask thresholds (stain is saturated,
    glass and background are not)."""
    return np.asarray(image.convert("RGB").convert("HSV"))[..., 1]


def tissue_mask(
    reader: SlideReader, *, thumb_size: int = 1024, min_saturation: int = MIN_TISSUE_SATURATION
) -> tuple[np.ndarray, float]:
    """Tissue mask by Otsu's threshold on HSV saturation of a thumbnail.

    Args:
        reader: an open slide.
        thumb_size: longest side of the thumbnail the mask is computed on.
        min_saturation: the threshold never goes below this (0-255), so blank glass is not called tissue.

    Returns:
        ``(mask, scale)``: boolean mask (H, W) and the level-0 pixels per mask pixel.
    """
    thumb = reader.get_thumbnail((thumb_size, thumb_size)).convert("RGB")
    sat = saturation(thumb)
    threshold = max(otsu_threshold(sat), float(min_saturation))
    mask = sat > threshold
    scale = reader.dimensions[0] / thumb.width
    return mask, float(scale)


# --- tile grid ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TileSpec:
    """One tile: level-0 origin ``(x, y)``, level-0 extent ``size``, read from ``level``."""

    level: int
    x: int
    y: int
    size: int
    tissue: float


@dataclass(frozen=True)
class TilePlan:
    """The tiles chosen for one slide."""

    info: SlideInfo
    tiles: list[TileSpec]
    out_size: int
    target_mpp: float
    tissue_fraction: float


def plan_tiles(
    reader: SlideReader,
    path: str | Path,
    *,
    tile_size: int = 224,
    target_mpp: float | None = None,
    magnification: float | None = None,
    mpp: float | None = None,
    default_mpp: float = DEFAULT_MPP,
    overlap: int = 0,
    min_tissue: float = 0.5,
    thumb_size: int = 1024,
) -> TilePlan:
    """Lay a tile grid over a slide and keep the tiles with enough tissue.

    Args:
        reader: an open slide.
        path: its path.
        tile_size: output tile side in pixels (at ``target_mpp``).
        target_mpp: resolution of the tiles in microns per pixel; default the slide's native (level 0).
        magnification: alternative to ``target_mpp`` (e.g. 20 for 20x); converted with the slide's mpp and power.
        mpp: user-given level-0 mpp (when the metadata lacks it or is wrong).
        default_mpp: assumed level-0 mpp (with a warning) when neither metadata nor user give one.
        overlap: overlap between neighbouring tiles, in output pixels.
        min_tissue: minimum tissue fraction (0-1) of a tile to keep it.
        thumb_size: thumbnail size for the tissue mask.

    Raises:
        SlideError: bad parameters, a slide smaller than one tile, or no tile with enough tissue.
    """
    if tile_size < 8 or not 0 <= overlap < tile_size:
        raise SlideError(path, f"bad tiling: tile_size={tile_size}, overlap={overlap} (need 0 <= overlap < tile_size)")
    if not 0.0 <= min_tissue <= 1.0:
        raise SlideError(path, f"bad tiling: min_tissue={min_tissue} must be within [0, 1]")
    info = slide_info(reader, path, mpp=mpp, default_mpp=default_mpp)
    base_mpp = info.mpp_x
    if target_mpp is None and magnification is not None:
        native_mag = info.magnification or 10.0 / base_mpp
        target_mpp = base_mpp * native_mag / magnification
    target = target_mpp or base_mpp
    factor = target / base_mpp
    extent = max(1, round(tile_size * factor))
    stride = max(1, round((tile_size - overlap) * factor))
    level = int(reader.get_best_level_for_downsample(factor * 1.01))
    if extent > info.width or extent > info.height:
        raise SlideError(path, f"slide {info.width}x{info.height} is smaller than one tile ({extent} px at level 0)")
    mask, scale = tissue_mask(reader, thumb_size=thumb_size)
    tiles: list[TileSpec] = []
    for y in range(0, info.height - extent + 1, stride):
        for x in range(0, info.width - extent + 1, stride):
            x0, y0 = int(x / scale), int(y / scale)
            x1, y1 = max(x0 + 1, math.ceil((x + extent) / scale)), max(y0 + 1, math.ceil((y + extent) / scale))
            region = mask[y0:y1, x0:x1]
            fraction = float(region.mean()) if region.size else 0.0
            if fraction >= min_tissue:
                tiles.append(TileSpec(level=level, x=x, y=y, size=extent, tissue=fraction))
    if not tiles:
        raise SlideError(
            path,
            f"no tissue found: no {tile_size}px tile at {target:.3f} mpp has >= {min_tissue:.0%} tissue "
            f"(whole-slide tissue fraction {float(mask.mean()):.1%}); lower --min-tissue if this is wrong",
        )
    return TilePlan(info=info, tiles=tiles, out_size=tile_size, target_mpp=target, tissue_fraction=float(mask.mean()))


# --- pixels ------------------------------------------------------------------------------------------------

_CACHE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def _cached_reader(path: str, mtime_ns: int) -> SlideReader:
    return open_slide(path)


def cached_slide(path: str | Path) -> SlideReader:
    """An open reader for ``path`` from a small per-process cache (re-opened when the file changes)."""
    p = str(path)
    try:
        mtime = os.stat(p).st_mtime_ns
    except OSError as exc:
        raise SlideError(p, f"cannot read slide: {exc.strerror or exc}", stage="read") from exc
    with _CACHE_LOCK:
        return _cached_reader(p, mtime)


def read_region_rgb(
    reader: SlideReader, level: int, x: int, y: int, size: int, out_size: int | None = None
) -> Image.Image:
    """Read a level-0 square ``(x, y, size)`` from ``level`` as RGB (transparent parts white), resized to out_size."""
    downsample = float(reader.level_downsamples[level])
    side = max(1, round(size / downsample))
    from training.pixels import to_rgb

    region = reader.read_region((int(x), int(y)), int(level), (side, side))
    rgb = to_rgb(region)  # the one decoder's mode normalisation (alpha on white)
    if out_size is not None and rgb.size != (out_size, out_size):
        rgb = rgb.resize((out_size, out_size), Image.Resampling.BILINEAR)
    return rgb


def read_tile(
    slide_path: str | Path, level: int, x: int, y: int, size: int, out_size: int | None = None
) -> Image.Image:
    """Pixels of a stored tile, re-read from the slide (for display and re-embedding).

    Args:
        slide_path: the slide file.
        level: pyramid level the tile was read from.
        x: level-0 x of the tile's top-left corner.
        y: level-0 y.
        size: the tile's extent in level-0 pixels (``Image.tile_size``).
        out_size: resize to this side (``Image.width``); None keeps the level's resolution.

    Raises:
        SlideError: the slide cannot be opened.
    """
    return read_region_rgb(cached_slide(slide_path), level, x, y, size, out_size)


def slide_thumbnail(slide_path: str | Path, max_size: int = 512) -> Image.Image:
    """An RGB thumbnail whose longest side is at most ``max_size``."""
    return cached_slide(slide_path).get_thumbnail((max_size, max_size)).convert("RGB")


def slide_fingerprint(path: str | Path, chunk: int = 4 * 1024 * 1024) -> str:
    """Content identity of a slide file: sha256 of its size and its first, middle and last ``chunk`` bytes.

    Whole-slide files are GBs; hashing all of them at submit time costs seconds each. The sampled fingerprint
    still changes when the file is replaced. Files up to ``3 * chunk`` bytes are hashed in full.
    """
    p = Path(path)
    size = p.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with p.open("rb") as fh:
        if size <= 3 * chunk:
            digest.update(fh.read())
        else:
            for offset in (0, size // 2, size - chunk):
                fh.seek(offset)
                digest.update(fh.read(chunk))
    return digest.hexdigest()


def tile_hash(slide_hash: str, level: int, x: int, y: int, size: int, out_size: int) -> str:
    """Deterministic content hash of a tile (the slide's identity plus its geometry)."""
    return hashlib.sha256(f"{slide_hash}:{level}:{x}:{y}:{size}:{out_size}".encode()).hexdigest()
