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
_FORMATS = "PNG, JPEG, TIFF, BMP or WebP"


def upload_message(name: str, reason: str, stage: str) -> str:
    """The user's words for why an upload is not a usable image (no Python internals, the file named first).

    Args:
        name: the uploaded file's name.
        reason: the decoder's reason (``training.pixels.PixelError.reason`` via ``ingest.errors.BadImageError``).
        stage: the decoder's stage ('read', 'decode' or 'validate').
    """
    import re

    size = re.search(r"(\d+)x(\d+)", reason)
    if "zero-byte" in reason:
        return (
            f"{name}: the file is empty (0 bytes), so there is no image in it. Choose the file again; it may not "
            "have finished saving or copying."
        )
    if "not a recognised image format" in reason:
        return f"{name}: not a readable image. It is not a {_FORMATS} image; is it really an image file?"
    if "truncated or corrupt" in reason or "cannot parse image header" in reason:
        return (
            f"{name}: not a readable image. The file is damaged (its image data is cut off or corrupt); export or "
            "copy it again."
        )
    if stage == "validate" and size and "too small" in reason:
        return f"{name}: {size[1]}×{size[2]} px is too small to search with (each side needs at least 8 px)."
    if stage == "validate" and size and "exceeds the limit" in reason:
        return (
            f"{name}: {size[1]}×{size[2]} px is more than a query image may have "
            f"({UPLOAD_MAX_PIXELS / 1e6:.0f} Mpx); crop or downscale it, or ingest it as a slide."
        )
    if "decompression bomb" in reason or "memory" in reason:
        return f"{name}: the image is too large to open; crop or downscale it, or ingest it as a slide."
    # anything else: the decoder's reason without exception details (object reprs, parenthesised internals)
    plain = re.sub(r"\s*\(.*\)\s*$", "", re.sub(r"<[^>]*>", "", reason)).strip() or "unknown problem"
    return f"{name}: not a readable image ({plain})."


def check_upload(name: str, data: bytes, max_mb: int) -> PILImage.Image:
    """Validate an uploaded file and decode it to RGB with the one decoder (``ingest.decode.decode_bytes``).

    Raises:
        UploadError: too large, not an allowed type, or not a decodable image; the message names the file and
            says what to do, in the user's words.
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
        raise UploadError(upload_message(name, exc.reason, exc.stage)) from exc


@dataclass(frozen=True)
class Upload:
    """A decoded upload and the hash of its bytes (the cache key of queries on it)."""

    name: str
    image: PILImage.Image
    sha256: str


def image_uploader(label: str, key: str, max_mb: int) -> Upload | None:
    """A file uploader limited to image types and ``max_mb``; returns the decoded image or None (shows errors).

    The widget shows and enforces ``max_mb`` (``max_upload_size``), the same number :func:`check_upload` checks.
    Whether a file was given at all (None here can also mean "bad file, message shown") is
    :func:`upload_given`.
    """
    file = st.file_uploader(
        label, type=list(UPLOAD_TYPES), key=key, max_upload_size=max_mb, help=f"One image, at most {max_mb} MB."
    )
    if file is None:
        return None
    data = file.getvalue()
    try:
        image = check_upload(file.name, data, max_mb)
    except UploadError as exc:
        st.error(str(exc))
        return None
    return Upload(file.name, image, hashlib.sha256(data).hexdigest())


def upload_given(key: str) -> bool:
    """Whether the uploader ``key`` holds a file (a good or a bad one)."""
    return st.session_state.get(key) is not None


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
