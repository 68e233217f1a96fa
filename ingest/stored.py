"""Reading back what is stored: a stored image's pixels and its model input for re-embedding.

A leaf of ``ingest`` (it imports only decode, slides, paths and errors): the pipeline uses it when it re-embeds,
the service and the dashboard for thumbnails, so no module below the service imports the service.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image as PILImage

from ingest.errors import BadImageError

if TYPE_CHECKING:
    from retrieval.models import Image
    from retrieval.settings import Settings
    from training.pixels import DecodeBudget


def _check_stored(image: Image, roots: Sequence[str | Path]) -> None:
    """Refuse to re-read a stored path outside the allowed roots (thumbnails, re-embedding)."""
    from ingest.paths import REFUSED, Roots, display_path

    if roots and not Roots(roots).contains(image.source_path):
        raise BadImageError(display_path(image.source_path), REFUSED, "read")


def image_pixels(
    image: Image,
    *,
    verify: bool = False,
    max_pixels: int | None = None,
    roots: Sequence[str | Path] = (),
    budget: DecodeBudget | None = None,
) -> PILImage.Image:
    """The pixels of a stored image: its file decoded, or its tile re-read from the slide.

    Args:
        image: an ``images`` row.
        verify: check that a file's bytes still have the stored content hash.
        max_pixels: decompression-bomb limit for files.
        roots: allowed roots (``Settings.allowed_roots``): a stored path outside them is not read.
        budget: decode memory budget (default: the process's).

    Raises:
        BadImageError: outside the roots, the file is gone, unreadable or changed. SlideError: unreadable slide.
    """
    from ingest.decode import DEFAULT_MAX_PIXELS, file_hash, load_image
    from ingest.slides import read_tile

    _check_stored(image, roots)
    if image.slide_id is not None:
        assert image.level is not None and image.x is not None and image.y is not None
        assert image.tile_size is not None
        return read_tile(image.source_path, image.level, image.x, image.y, image.tile_size, out_size=image.width)
    if verify and file_hash(image.source_path) != image.content_hash:
        raise BadImageError(image.source_path, "file changed since it was ingested (content hash differs)", "read")
    return load_image(image.source_path, max_pixels=max_pixels or DEFAULT_MAX_PIXELS, budget=budget)


def image_model_input(
    image: Image,
    preprocess: Callable[[PILImage.Image], np.ndarray],
    *,
    settings: Settings,
    budget: DecodeBudget | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """A stored image's model input for re-embedding: ``(preprocess(pixels), (width, height))``.

    The file's content hash is verified and its decode stays inside the decode memory budget.

    Raises:
        BadImageError / SlideError: as :func:`image_pixels`.
    """
    from ingest.decode import file_hash, model_input

    if image.slide_id is not None:
        rgb = image_pixels(image, roots=settings.allowed_roots)
        return preprocess(rgb), rgb.size
    _check_stored(image, settings.allowed_roots)
    if file_hash(image.source_path) != image.content_hash:
        raise BadImageError(image.source_path, "file changed since it was ingested (content hash differs)", "read")
    return model_input(image.source_path, preprocess, max_pixels=settings.max_image_pixels, budget=budget)
