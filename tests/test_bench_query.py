"""benchmarks/bench_query.py at a million vectors must fit in memory: its numpy baseline works through the vectors
in blocks, and the vectors can live in a memory-mapped file. Checked here at a small N with tiny blocks, and the
whole run once with the on-disk vectors (the code path ``--n 1000000`` takes)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_query  # noqa: E402


def _reference(x: np.ndarray, q: np.ndarray, k: int, idx: np.ndarray | None = None) -> list[int]:
    rows = np.arange(len(x)) if idx is None else idx
    s = x[rows] @ q
    return rows[np.argsort(-s, kind="stable")[:k]].tolist()


def test_on_disk_vectors_equal_in_ram_and_blocked_top_k_equals_one_pass(tmp_path: Path) -> None:
    x_ram, cls = bench_query.make_vectors(2_500, 24, seed=3)
    x_disk, cls2 = bench_query.make_vectors(2_500, 24, seed=3, path=tmp_path / "v.npy")
    assert isinstance(x_disk, np.memmap) and np.array_equal(cls, cls2)
    np.testing.assert_array_equal(x_ram, x_disk)
    rng = np.random.default_rng(0)
    idx = np.flatnonzero(cls == 2)
    for q in rng.normal(size=(5, 24)).astype(np.float32):
        for k in (1, 10, 40):
            want = _reference(x_ram, q, k)
            assert bench_query.brute_topk(x_disk, q, k, chunk=7).tolist() == want  # many blocks, ragged last
            assert bench_query.brute_topk(x_disk, q, k, chunk=10_000).tolist() == want  # one block
            assert bench_query.brute_topk(x_disk, q, k, idx, chunk=64).tolist() == _reference(x_ram, q, k, idx)


def test_disk_check_stops_with_what_is_needed_where(tmp_path: Path) -> None:
    need = bench_query.disk_needed(1_000_000, 2048, 50, True, 100_000, "int8")
    assert 35e9 < sum(need.values()) < 50e9  # the 1M x 2048 run: ~42 GB
    bench_query.check_disk(tmp_path, {"tiny": 1_000})  # enough: no error
    with pytest.raises(SystemExit, match=r"not enough disk in .*--workdir"):
        bench_query.check_disk(tmp_path, {"engine": 1e18})


@pytest.mark.slow
def test_whole_run_with_vectors_on_disk(tmp_path: Path) -> None:
    res = bench_query.run_one(
        400, 32, 5, 10, tmp_path, seed=1, quantization="int8", vectors_on_disk="yes", store_on_disk=True, bare_n=100
    )
    assert res["vectors_on_disk"] is True
    assert res["recall10_exact_mode"] == 1.0 and res["recall10"] >= 0.9
    # top-k order rotates per query: every kind was the first (cold) search of some query vector, and ran warm
    for kind in ("topk", "topk_f", "store_topk"):
        assert res[f"{kind}_cold_p50_ms"] > 0 and res[f"{kind}_p50_ms"] > 0
    assert res["disk_read_kib_cold"] >= 0 and res["disk_read_kib_warm"] >= 0
    assert res["upsert_per_s"] > 0 and res["bare_upsert_per_s"] > 0 and res["mirror_mb"] > 0 and res["bare_n"] == 100
    # the dashboard's paths ran on the same index: Search page, cluster sample, heat map (20 slides of
    # min(1000, 400 // 40) tiles here; 20 x 1,000 at full size)
    assert res["dash_search_self_first"] == 1.0 and res["dash_search_p50_ms"] > 0
    assert res["dash_preamble_p50_ms"] > 0 and res["dash_preamble_count_p50_ms"] > 0
    assert res["cluster_sample_n"] == 400 and res["cluster_pca_s"] > 0
    assert res["heat_shape"] == (20, 10) and res["heat_tiles"] == 200 and res["heat_s"] > 0
    assert res["anon_peak_growth_mb"] >= res["anon_peak_growth_mb[build]"]
