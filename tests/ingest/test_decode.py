from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ingest.decode import file_hash, load_image
from ingest.errors import BadImageError
from tests.support.ingest_inputs import he_image, make_bad_inputs, make_odd_mode_images, make_unreadable

EXPECTED = {
    "zero_byte": ("read", "zero-byte"),
    "truncated_jpeg": ("decode", "truncated"),
    "truncated_png": ("decode", "truncated"),
    "text_as_png": ("decode", "not a recognised image"),
    "bomb": ("validate", "exceeds the limit"),
    "one_pixel": ("validate", "too small"),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_bad_input_raises_clear_error(tmp_path: Path, kind: str) -> None:
    paths = make_bad_inputs(tmp_path)
    stage, reason = EXPECTED[kind]
    with pytest.raises(BadImageError) as info:
        load_image(paths[kind], max_pixels=50_000_000)
    assert info.value.stage == stage
    assert reason in info.value.reason
    assert str(paths[kind]) in str(info.value)


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="does not exist") as info:
        load_image(tmp_path / "nope.png")
    assert info.value.stage == "read"
    with pytest.raises(BadImageError, match="directory"):
        load_image(tmp_path)


def test_unreadable(tmp_path: Path) -> None:
    path = make_unreadable(tmp_path / "locked.png")
    if path is None:
        pytest.skip("running as root: file permissions do not apply")
    with pytest.raises(BadImageError, match="permission denied"):
        load_image(path)


def test_configurable_pixel_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    he_image(200).save(path)
    assert load_image(path, max_pixels=200 * 200).size == (200, 200)
    with pytest.raises(BadImageError, match="40000 pixels exceeds the limit of 39999"):
        load_image(path, max_pixels=200 * 200 - 1)


@pytest.mark.parametrize("kind", ["gray16", "cmyk", "palette", "rgba", "la", "exif_rotated", "tiff", "bmp"])
def test_odd_modes_become_rgb(tmp_path: Path, kind: str) -> None:
    path = make_odd_mode_images(tmp_path)[kind]
    image = load_image(path)
    assert image.mode == "RGB"
    arr = np.asarray(image)
    assert arr.dtype == np.uint8
    assert arr.std() > 5  # real tissue content survived the conversion (not a flat / black image)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = make_odd_mode_images(tmp_path)["gray16"]
    expected = np.asarray(he_image(96, 3).convert("L"))
    got = np.asarray(load_image(path))[..., 0]
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_exif_orientation_applied(tmp_path: Path) -> None:
    path = make_odd_mode_images(tmp_path)["exif_rotated"]
    assert Image.open(path).size == (96, 64)
    assert load_image(path).size == (64, 96)


def test_alpha_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "transparent.png"
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(path)
    assert np.asarray(load_image(path)).min() == 255


def test_hash_is_of_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    he_image(64).save(path)
    assert file_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()
