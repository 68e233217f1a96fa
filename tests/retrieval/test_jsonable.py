"""The one JSON-safe conversion (CLI output, stored evaluation reports, stored training configs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from retrieval.jsonable import dumps, json_safe


def test_nan_and_infinity_become_null_and_numpy_becomes_python() -> None:
    """Planted bug: keeping non-finite floats (no ``isfinite`` check) fails here: strict JSON refuses NaN."""
    value = {
        "auc": float("nan"),
        "ci": (np.float32(0.5), float("inf")),
        "n": np.int64(3),
        "ok": np.bool_(True),
        "curve": np.array([0.25, np.nan]),
        1: Path("runs/enc.pt"),
        "none": None,
    }
    safe = json_safe(value)
    assert safe == {
        "auc": None,
        "ci": [0.5, None],
        "n": 3,
        "ok": True,
        "curve": [0.25, None],
        "1": "runs/enc.pt",
        "none": None,
    }
    assert type(safe["n"]) is int and type(safe["ok"]) is bool and type(safe["ci"][0]) is float
    assert json.loads(dumps(value)) == safe  # strict JSON (allow_nan=False) did not raise


def test_finite_floats_are_kept_exactly() -> None:
    assert json_safe([0.1, -2.5e-300, 1e300]) == [0.1, -2.5e-300, 1e300]
