"""Small UI building blocks shared by the pages: error boxes, upload checks, thumbnails, galleries."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st
from PIL import Image as PILImage

from ingest.decode import IMAGE_TYPES as UPLOAD_TYPES

logger = logging.getLogger(__name__)

THUMB_PX = 160


class UploadError(Exception):
    """An uploaded file that is too large, of the wrong type, or not a decodable image."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from ingest.errors import USER_ERRORS

    return (UploadError, *USER_ERRORS)


@contextlib.contextmanager
def shown_errors(what: str) -> Iterator[None]:
    """Show any error raised inside as an ``st.error`` message, never as a stack trace.

    User-fixable errors (the packages' error hierarchies, bad uploads) show their message, which says how to fix
    it; anything else shows a short message and is logged with its traceback on the server.

    Args:
        what: what was being done, e.g. ``"search"`` (used in the message).
    """
    try:
        yield
    except _user_errors() as exc:
        st.error(f"Could not {what}: {exc}")
    except Exception as exc:  # noqa: BLE001 - never a raw traceback (st.rerun/st.stop are BaseException: pass)
        logger.exception("unexpected error while trying to %s", what)
        st.error(f"Could not {what}: unexpected {type(exc).__name__}: {exc}. The server log has the details.")


#: Largest query image accepted from an upload (pixels), checked from the header before decoding.
UPLOAD_MAX_PIXELS = 10_000 * 10_000


def check_upload(name: str, data: bytes, max_mb: int) -> PILImage.Image:
    """Validate an uploaded file and decode it to RGB.

    Raises:
        UploadError: too large, not an allowed type, or not a decodable image.
    """
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix not in UPLOAD_TYPES:
        raise UploadError(f"{name}: type .{suffix or '?'} is not accepted; upload one of {', '.join(UPLOAD_TYPES)}")
    if len(data) > max_mb * 1024 * 1024:
        raise UploadError(
            f"{name}: {len(data) / 1e6:.1f} MB is over the {max_mb} MB upload limit "
            "(HISTOQUERY_MAX_UPLOAD_MB); crop or downscale the image"
        )
    from ingest.decode import decode_bytes  # the one decoder (EXIF, alpha on white, 16-bit), as for stored files
    from ingest.errors import BadImageError

    try:
        return decode_bytes(data, name, max_pixels=UPLOAD_MAX_PIXELS)
    except BadImageError as exc:
        raise UploadError(f"{name}: not a readable image ({exc.reason})") from exc


@dataclass(frozen=True)
class Upload:
    """A decoded upload and the hash of its bytes (the cache key of queries on it)."""

    name: str
    image: PILImage.Image
    sha256: str


def image_uploader(label: str, key: str, max_mb: int) -> Upload | None:
    """A file uploader limited to image types and ``max_mb``; returns the decoded image or None (shows errors)."""
    file = st.file_uploader(label, type=list(UPLOAD_TYPES), key=key, help=f"One image, at most {max_mb} MB.")
    if file is None:
        return None
    data = file.getvalue()
    try:
        image = check_upload(file.name, data, max_mb)
    except UploadError as exc:
        st.error(str(exc))
        return None
    return Upload(file.name, image, hashlib.sha256(data).hexdigest())


def to_png(image: PILImage.Image, max_px: int = THUMB_PX) -> bytes:
    """A PNG thumbnail (longest side ``max_px``) of ``image`` (for drawings: outlines stay sharp)."""
    thumb = image.convert("RGB")
    thumb.thumbnail((max_px, max_px))
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")
    return buf.getvalue()


def to_jpeg(image: PILImage.Image, max_px: int = THUMB_PX, quality: int = 85) -> bytes:
    """A JPEG thumbnail (longest side ``max_px``) of ``image``: ~8x smaller than PNG for tissue photos."""
    thumb = image.convert("RGB")
    thumb.thumbnail((max_px, max_px))
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    """``data:`` URI of PNG or JPEG bytes, for an ``<img>`` inside HTML (no separate media request)."""
    mime = "image/png" if data[:4] == b"\x89PNG" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def card_html(thumb: bytes, title_html: str, meta: str, alt: str) -> str:
    """One gallery card as a single HTML element: the thumbnail inline (no separate media request), a title line
    (trusted HTML built by the page) and a caption line (user data: escaped, like ``alt``)."""
    return (
        f'<div class="hq-card"><img src="{data_uri(thumb)}" alt="{html.escape(alt, quote=True)}" '
        'style="width:100%;height:auto;border-radius:4px;display:block">'
        f'<p style="margin:0.4rem 0 0.1rem 0">{title_html}</p>'
        f'<p style="margin:0;font-size:0.85rem;opacity:0.7">{html.escape(meta)}</p></div>'
    )


def placeholder_png(text: str = "no preview", size: int = THUMB_PX) -> bytes:
    """A grey square (shown when an image's pixels cannot be read, e.g. its file moved)."""
    from PIL import ImageDraw

    img = PILImage.new("RGB", (size, size), (225, 225, 225))
    ImageDraw.Draw(img).text((10, size // 2 - 6), text, fill=(90, 90, 90))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def chunked(items: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``items`` of length ``n``."""
    for i in range(0, len(items), n):
        yield items[i : i + n]
