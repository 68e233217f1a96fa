"""Upload errors speak the user's language: the file named first, what is wrong, what to do; no Python internals."""

from __future__ import annotations

import io

import pytest
from PIL import Image as PILImage

from dashboard.ui import UploadError, check_upload, upload_message

INTERNALS = ("BytesIO", "0x", "<", ">", "Traceback", "PixelError", "BadImageError", "zero-byte file (empty)")


def png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, (200, 120, 160)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("empty scan.png", b"", "empty scan.png: the file is empty (0 bytes)"),
        ("notes.png", b"these are my notes, not a picture", "notes.png: not a readable image. It is not a PNG"),
        ("cut.png", png((64, 64))[:120], "cut.png: not a readable image. The file is damaged"),
        ("dot.png", png((4, 4)), "dot.png: 4×4 px is too small to search with"),
    ],
    ids=["zero-byte", "not-an-image", "truncated", "too-small"],
)
def test_bad_uploads_are_named_and_explained(name: str, data: bytes, expected: str) -> None:
    """Planted bug: passing the decoder's reason through (``f"{name}: not a readable image ({reason})"``) fails."""
    with pytest.raises(UploadError) as info:
        check_upload(name, data, max_mb=5)
    message = str(info.value)
    assert message.startswith(expected), message
    assert not [bit for bit in INTERNALS if bit in message], message


def test_an_unforeseen_reason_loses_its_python_internals() -> None:
    """Planted bug: the fallback keeping the raw reason (an object repr with its address) fails this test."""
    message = upload_message("x.png", "cannot identify image file <_io.BytesIO object at 0x7f3a9c2e1b80>", "decode")
    assert message.startswith("x.png: not a readable image (cannot identify image file")
    assert not [bit for bit in INTERNALS if bit in message], message
