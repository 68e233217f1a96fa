"""The one decoder (training/pixels.py): bounded header reads, pixel limit and memory budget before decoding."""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image

from tests.support.ingest_inputs import he_image, write_bilevel_png, write_sparse_fake_image
from training.pixels import DecodeBudget, PixelError, load_rgb, model_pixels


def test_a_small_file_holding_a_huge_image_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = write_bilevel_png(tmp_path / "bilevel.png", 13_000)
    assert bomb.stat().st_size < 64 * 1024
    budget = DecodeBudget(512 * 1024 * 1024)
    with pytest.raises(PixelError, match="decode memory budget") as info:
        load_rgb(bomb, budget=budget)  # 169 M pixels: under the default pixel limit, over the budget
    assert info.value.stage == "validate"
    assert budget.in_use == 0  # nothing left reserved after a refusal
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(PixelError, match="exceeds the limit"):
        load_rgb(bomb, max_pixels=100_000_000)  # the per-call pixel limit, from the header
    assert pillow_limit == Image.MAX_IMAGE_PIXELS


def test_the_header_is_sniffed_from_a_bounded_read(tmp_path: Path) -> None:
    fake = write_sparse_fake_image(tmp_path / "huge.png", 256 * 1024 * 1024)
    tracemalloc.start()
    with pytest.raises(PixelError, match="not a recognised image format"):
        load_rgb(fake)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 32 * 1024 * 1024, f"{peak / 2**20:.0f} MiB allocated to find out it is not an image"


def test_decodes_wait_for_their_share_of_the_budget() -> None:
    budget = DecodeBudget(100)
    holding, release, second = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with budget.reserve(60, "a"):
            holding.set()
            release.wait(10)

    def other() -> None:
        with budget.reserve(60, "b"):
            second.set()

    threads = [threading.Thread(target=first), threading.Thread(target=other)]
    threads[0].start()
    assert holding.wait(10)
    threads[1].start()
    assert not second.wait(0.3)  # 60 + 60 > 100: the second decode waits ...
    release.set()
    assert second.wait(10)  # ... until the first one is done
    for t in threads:
        t.join(10)
    assert budget.in_use == 0
    with pytest.raises(PixelError, match="decode memory budget"), budget.reserve(101, "c"):
        pass


def test_model_pixels_are_the_resized_decoded_image(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    he_image(120, 1).convert("RGBA").save(path)
    array, size = model_pixels(path, 64, budget=DecodeBudget(10**8))
    assert array.shape == (3, 64, 64) and array.dtype.name == "uint8" and size == (120, 120)
