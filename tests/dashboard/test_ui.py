"""The page building blocks in ``dashboard.ui`` that need no running app: thumbnails, data URIs, cards, uploads."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image as PILImage

from dashboard.ui import UploadError, card_html, check_upload, data_uri, to_jpeg, to_png
from tests.conftest import SAMPLES


def _sample() -> PILImage.Image:
    path = sorted((SAMPLES / "kather2016" / "01_TUMOR").iterdir())[0]
    with PILImage.open(path) as img:
        return img.convert("RGB")


def test_jpeg_thumbnail_is_small_and_bounded() -> None:
    img = _sample()
    jpeg, png = to_jpeg(img), to_png(img)
    assert jpeg[:3] == b"\xff\xd8\xff" and png[:4] == b"\x89PNG"
    assert len(jpeg) * 3 < len(png)  # tissue photos: JPEG is several times smaller
    with PILImage.open(io.BytesIO(jpeg)) as thumb:
        assert thumb.size == img.size  # 150 px sample: never upscaled
    with PILImage.open(io.BytesIO(to_jpeg(img.resize((600, 400))))) as thumb:
        assert thumb.size == (160, 107)  # longest side 160, aspect kept


def test_data_uri_round_trips_and_names_the_type() -> None:
    img = _sample()
    for data, mime in ((to_jpeg(img), "image/jpeg"), (to_png(img), "image/png")):
        uri = data_uri(data)
        head, b64 = uri.split(",", 1)
        assert head == f"data:{mime};base64"
        assert base64.b64decode(b64) == data


def test_card_escapes_user_text() -> None:
    html = card_html(to_jpeg(_sample()), "<b>#1</b> · cos <b>1.000</b>", "label <script>x</script>", 'a"b.png')
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'alt="a&quot;b.png"' in html
    assert "<b>#1</b> · cos <b>1.000</b>" in html and 'src="data:image/jpeg;base64,' in html


def test_upload_checks_type_size_and_content() -> None:
    buf = io.BytesIO()
    _sample().save(buf, format="PNG")
    assert check_upload("a.png", buf.getvalue(), max_mb=5).mode == "RGB"
    with pytest.raises(UploadError, match="type .txt is not accepted"):
        check_upload("a.txt", b"hello", max_mb=5)
    with pytest.raises(UploadError, match="over the 1 MB upload limit"):
        check_upload("big.png", b"\0" * (2 * 1024 * 1024), max_mb=1)
    with pytest.raises(UploadError, match="not a readable image"):
        check_upload("fake.png", b"not an image at all", max_mb=5)
