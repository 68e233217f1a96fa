"""benchmarks/bench_upsert.py compares the old and the new upsert path in one run and exits 1 unless both stores end
with the same points, payloads, mirror rows and filtered answers. Run here at a small N: the new path (one ``pwrite``
per run of consecutive rows, lookup-only integer indexes, no payload copy) must store exactly what the old one did.
Planted bug: the mirror's ``pwrite`` offset one row off makes it print "mirror rows differ" and exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_new_upsert_path_stores_what_the_old_one_did(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_upsert.py"), "--n", "1500", "--dim", "16", "--block", "200",
         "--bare-n", "200", "--store-vectors-on-disk", "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "same contents: yes" in out.stdout
