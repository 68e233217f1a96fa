"""JSON-safe values: the one conversion used for everything written as JSON (CLI output, stored reports, configs).

Strict JSON has no NaN or infinity (PostgreSQL's ``json`` type and most parsers refuse Python's ``NaN``), and
metrics and training configs carry numpy scalars and arrays; one function handles both, so a metric that is NaN
(one class only, no pairs) reads as ``null`` everywhere instead of failing in one place and not another.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """``value`` as JSON-storable Python values.

    Dicts (keys as text), lists and tuples are converted item by item; numpy arrays become lists and numpy scalars
    Python numbers; NaN and infinity become None; any other object becomes its ``str``.
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    return str(value)


def dumps(value: Any) -> str:
    """Indented strict JSON of :func:`json_safe` ``(value)`` (NaN / infinity written as ``null``)."""
    return json.dumps(json_safe(value), indent=2, allow_nan=False)
