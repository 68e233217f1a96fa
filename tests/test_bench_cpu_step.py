"""benchmarks/bench_cpu_step.py times the ``cpu-crops`` step per variant; its numbers only mean something if each
variant computes what its name says. Every variant's first step sees the same images, views and weights, and the
script prints that step's loss beside eager's: float32 variants (channels_last) agree to float rounding, bf16
autocast differs by bf16's. Planted bugs: autocast never enabled for ``bf16`` (its loss equals eager's), or the
variants' first batches drawn apart (channels_last's loss moves by ~1e-2)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_each_variant_computes_what_its_name_says() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_cpu_step.py"), "--rounds", "1", "--steps", "1",
         "--variants", "eager,channels_last,bf16"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    diffs = dict(re.findall(r"(\w+) [\d.]+ \(diff ([\d.e+-]+)\)", out.stdout))
    assert float(diffs["channels_last"]) < 5e-6, out.stdout
    assert float(diffs["bf16"]) > 5e-5, out.stdout
    assert "| bf16 | 64 |" in out.stdout and "vs eager" in out.stdout


def test_unknown_variant_is_a_one_line_error() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_cpu_step.py"), "--variants", "eager,fp8"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "unknown ['fp8']" in out.stderr and "Traceback" not in out.stderr
