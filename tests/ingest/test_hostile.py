"""Hostile files in a folder: each gets its own clear reason, nothing is read or decoded whole, the rest is stored."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from ingest.decode import file_hash
from ingest.service import job_status, submit_ingest
from ingest.sources import classify
from retrieval.settings import Settings
from tests.support.ingest_inputs import he_image, write_bilevel_png, write_sparse_fake_image


def test_files_are_hashed_in_a_stream(tmp_path: Path) -> None:
    big = write_sparse_fake_image(tmp_path / "big.png", 256 * 1024 * 1024)
    tracemalloc.start()
    digest = file_hash(big)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(digest) == 64 and peak < 16 * 1024 * 1024, f"{peak / 2**20:.0f} MiB held to hash a file"


def test_every_file_header_is_checked_even_small_ones(tmp_path: Path) -> None:
    small_huge = write_bilevel_png(tmp_path / "bilevel.png", 13_000)  # ~20 KB: today's 4 MiB rule skipped it
    assert classify(small_huge) == "slide"  # tiled (or refused), never embedded whole


def test_a_folder_of_hostile_files_gets_one_reason_per_file(embedded_settings: Settings, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    he_image(96, 1).save(data / "good.png")
    write_bilevel_png(data / "bilevel_a.png", 13_000)
    write_bilevel_png(data / "bilevel_b.png", 13_001)
    write_sparse_fake_image(data / "huge.png", 512 * 1024 * 1024)
    status = job_status(submit_ingest([data], settings=embedded_settings, dataset="d"), settings=embedded_settings)
    reasons = {Path(f.source).name: f.reason for f in status.failures}
    assert status.status == "done" and status.done == 1 and status.failed == 3, status
    assert "decode memory budget" in reasons["bilevel_a.png"] and "decode memory budget" in reasons["bilevel_b.png"]
    assert "not a recognised image format" in reasons["huge.png"]
