"""Pair: the decision on two images (``Retrieval.pair``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from dashboard.queries.cache import RESULT_TTL_S
from dashboard.services import open_retrieval


@dataclass(frozen=True)
class PairOutcome:
    """A pair decision as the Pair page shows it."""

    cos: float
    distance: float
    same: bool
    threshold_cos: float
    threshold_source: str


@st.cache_data(ttl=RESULT_TTL_S, max_entries=256, show_spinner="Comparing ...")
def pair(key: str, version: str, a_key: str, b_key: str, _a: Any, _b: Any) -> PairOutcome:
    """Pair decision of two queries (image ids or PIL images); ``a_key``/``b_key`` identify them for the cache."""
    need_encoder = not (isinstance(_a, int) and isinstance(_b, int))
    with open_retrieval(key, version, need_encoder=need_encoder) as r:
        res = r.pair(_a, _b)
    return PairOutcome(
        cos=float(res.cos),
        distance=float(res.d),
        same=bool(res.same),
        threshold_cos=float(res.threshold_cos),
        threshold_source=str(res.threshold_source),
    )
