"""Stored images for the pages: their facts (``dashboard.data``), thumbnails, full-resolution views, slide overviews.

Drawing a result's box on a slide overview is presentation; reading pixels is ``ingest.stored.image_pixels``.
"""

from __future__ import annotations

import logging

import streamlit as st
from PIL import Image as PILImage
from PIL import ImageDraw

from dashboard import data
from dashboard.queries.cache import RESULT_TTL_S
from dashboard.services import services_by_key
from dashboard.ui import placeholder_png, to_jpeg, to_png

logger = logging.getLogger(__name__)

#: Longest side of the enlarged view of a stored image (larger images are shown scaled, and say so).
ENLARGE_MAX_PX = 2048


@st.cache_data(ttl=RESULT_TTL_S, max_entries=4096, show_spinner=False)
def image_infos(key: str, ids: tuple[int, ...]) -> dict[int, data.ImageInfo]:
    with services_by_key(key).session() as session:
        return data.image_infos(ids, session=session)


def pixels(key: str, image_id: int) -> PILImage.Image:
    """The pixels of a stored image (``ingest.stored.image_pixels``: inside the allowed roots and pixel limit).

    Raises:
        KeyError: no image with that id.
    """
    from ingest.stored import image_pixels
    from retrieval.models import Image

    svc = services_by_key(key)
    with svc.session() as session:
        row = session.get(Image, image_id)
        if row is None:
            raise KeyError(image_id)
        return image_pixels(row, max_pixels=svc.settings.max_image_pixels, roots=svc.settings.allowed_roots)


@st.cache_data(ttl=3600, max_entries=5000, show_spinner=False)
def thumbnail(key: str, image_id: int, max_px: int = 160) -> bytes:
    """JPEG thumbnail of a stored image (a grey PNG placeholder when its pixels cannot be read)."""
    info = image_infos(key, (image_id,)).get(image_id)
    if info is None:
        return placeholder_png("unknown image")
    try:
        return to_jpeg(pixels(key, image_id), max_px)
    except Exception as exc:  # noqa: BLE001 - a moved/deleted source file must not break a gallery
        logger.warning("no thumbnail for image %d (%s): %s", image_id, info.source_path, exc)
        return placeholder_png("file missing")


@st.cache_data(ttl=600, max_entries=32, show_spinner="Reading the full-resolution image ...")
def full_image(key: str, image_id: int, max_px: int = ENLARGE_MAX_PX) -> tuple[bytes, tuple[int, int]]:
    """PNG of a stored image at full resolution (scaled down to ``max_px`` only when larger) and its real size."""
    image = pixels(key, image_id)
    return to_png(image, max_px), image.size


@st.cache_data(ttl=3600, max_entries=256, show_spinner=False)
def slide_with_results(
    key: str, slide_id: int, query_id: int | None, marks: tuple[tuple[int, int], ...], max_px: int = 360
) -> bytes | None:
    """PNG of a slide's thumbnail with the query tile outlined in green and result tiles in orange with their rank.

    Args:
        key: settings key.
        slide_id: the slide.
        query_id: the query tile (outlined in green) when it is on this slide, else None.
        marks: (rank, image id) of the results to mark (tiles of this slide; others are skipped).
        max_px: longest side of the drawing.

    Returns:
        PNG bytes, or None when the slide has no readable file.
    """
    ids = tuple(i for _, i in marks) + ((query_id,) if query_id is not None else ())
    infos = image_infos(key, ids)
    on_slide = {i: info for i, info in infos.items() if info.slide_id == slide_id and info.is_tile}
    any_info = next(iter(on_slide.values()), None)
    if any_info is None or any_info.slide_path is None:
        return None
    from ingest.slides import cached_slide, slide_thumbnail

    thumb = slide_thumbnail(any_info.slide_path, max_px).convert("RGB")
    width = any_info.slide_width or cached_slide(any_info.slide_path).dimensions[0]
    scale = thumb.width / float(width)
    draw = ImageDraw.Draw(thumb)

    def box(info: data.ImageInfo) -> tuple[float, float, float, float]:
        x0, y0 = int(info.x or 0) * scale, int(info.y or 0) * scale
        side = max(3.0, float(info.tile_size or 0) * scale)
        return (x0, y0, x0 + side, y0 + side)

    for rank, image_id in sorted(marks, reverse=True):  # best rank drawn last (on top)
        info = on_slide.get(image_id)
        if info is None or image_id == query_id:
            continue
        x0, y0, x1, y1 = box(info)
        draw.rectangle([x0, y0, x1, y1], outline=(255, 140, 0), width=2)
        draw.text((x0 + 2, y0 + 1), str(rank), fill=(255, 140, 0))
    if query_id is not None and query_id in on_slide:
        draw.rectangle(list(box(on_slide[query_id])), outline=(0, 200, 0), width=3)
    return to_png(thumb, max_px)
