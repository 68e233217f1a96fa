from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ingest.errors import SlideError
from ingest.slides import (
    PlainImageSlide,
    open_slide,
    otsu_threshold,
    plan_tiles,
    read_tile,
    slide_fingerprint,
    slide_thumbnail,
)
from tests.support.ingest_inputs import he_image

TCGA = "slides/tcga-cr-7395-01a-01-ts1.svs"


def test_svs_with_mpp_metadata(sample_slide: Path) -> None:
    reader = open_slide(sample_slide)
    plan = plan_tiles(reader, sample_slide, tile_size=224, min_tissue=0.5)
    assert plan.info.mpp_source == "metadata"
    assert plan.info.mpp_x == pytest.approx(0.499)
    assert plan.info.magnification == 20
    assert 10 < len(plan.tiles) < 132  # tissue only, not the full 9 x 13 grid
    assert all(t.tissue >= 0.5 and t.size == 224 and t.level == 0 for t in plan.tiles)
    tile = plan.tiles[0]
    pixels = read_tile(sample_slide, tile.level, tile.x, tile.y, tile.size, out_size=224)
    assert pixels.mode == "RGB" and pixels.size == (224, 224)
    assert np.asarray(pixels.convert("HSV"))[..., 1].mean() > 20  # stained tissue, not white glass


def test_overlap_and_target_mpp(sample_slide: Path) -> None:
    reader = open_slide(sample_slide)
    native = plan_tiles(reader, sample_slide, tile_size=224, min_tissue=0.0)
    overlapped = plan_tiles(reader, sample_slide, tile_size=224, overlap=112, min_tissue=0.0)
    coarse = plan_tiles(reader, sample_slide, tile_size=224, target_mpp=0.998, min_tissue=0.0)
    by_mag = plan_tiles(reader, sample_slide, tile_size=224, magnification=10, min_tissue=0.0)
    assert len(native.tiles) == (2220 // 224) * (2967 // 224)
    assert len(overlapped.tiles) > 3 * len(native.tiles)
    assert coarse.tiles[0].size == 448 and by_mag.tiles[0].size == 448


def test_missing_mpp_warns_and_uses_default_or_user(shared_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = shared_data / TCGA
    reader = open_slide(path)
    with caplog.at_level(logging.WARNING):
        plan = plan_tiles(reader, path, tile_size=224, target_mpp=1.0)
    assert "no microns-per-pixel" in caplog.text
    assert plan.info.mpp_source == "default" and plan.info.mpp_x == 0.5
    assert plan.tiles[0].size == 448
    assert plan.tiles[0].level == 1  # 2x downsampled level read for a 2x tile
    user = plan_tiles(reader, path, tile_size=224, mpp=0.25, target_mpp=1.0)
    assert user.info.mpp_source == "user" and user.tiles[0].size == 896
    tile = plan.tiles[0]
    assert read_tile(path, tile.level, tile.x, tile.y, tile.size, out_size=224).size == (224, 224)


def test_no_tissue_slide(tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (600, 600), (245, 245, 245)).save(blank)
    with pytest.raises(SlideError, match="no tissue found"):
        plan_tiles(open_slide(blank), blank, tile_size=128)


def test_plain_image_fallback(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    canvas = Image.new("RGB", (640, 640), (250, 250, 250))
    canvas.paste(he_image(320), (0, 0))
    canvas.save(big)
    reader = open_slide(big)
    assert isinstance(reader, PlainImageSlide)
    plan = plan_tiles(reader, big, tile_size=160, min_tissue=0.5)
    assert {(t.x, t.y) for t in plan.tiles} == {(0, 0), (160, 0), (0, 160), (160, 160)}
    assert plan.info.mpp_source == "default"
    assert slide_thumbnail(big, 64).size == (64, 64)


def test_unsupported_and_missing(tmp_path: Path) -> None:
    bogus = tmp_path / "x.svs"
    bogus.write_bytes(b"definitely not a slide" * 100)
    with pytest.raises(SlideError, match="unsupported slide format") as info:
        open_slide(bogus)
    assert info.value.stage == "read"
    with pytest.raises(SlideError, match="does not exist"):
        open_slide(tmp_path / "nope.svs")


def test_bad_tiling_parameters(sample_slide: Path) -> None:
    reader = open_slide(sample_slide)
    with pytest.raises(SlideError, match="overlap"):
        plan_tiles(reader, sample_slide, tile_size=224, overlap=224)
    with pytest.raises(SlideError, match="smaller than one tile"):
        plan_tiles(reader, sample_slide, tile_size=4000)


def test_otsu_separates_two_modes() -> None:
    values = np.concatenate([np.full(100, 10), np.full(100, 200)]).astype(np.uint8)
    assert 10 <= otsu_threshold(values) < 200


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    a = tmp_path / "a.bin"
    a.write_bytes(b"x" * 100)
    first = slide_fingerprint(a)
    a.write_bytes(b"x" * 99 + b"y")
    assert slide_fingerprint(a) != first
