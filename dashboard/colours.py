"""Category colours for the cluster map: derived from the value itself (stable across views, sample sizes and
pages), distinct within the index's categories, grey for "no value"."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

#: No label / no slide / unknown: grey, and no palette colour is grey.
MISSING = "#b0b0b0"
MISSING_VALUES = frozenset({"(no label)", "-", "?", ""})

# 21 colours, pairwise CIELAB distance >= 30 (clearly different side by side), none grey, none near-white or
# near-black: Tableau-10, then Plotly's Alphabet, Dark24 and Light24 palettes, filtered greedily in that order
PALETTE = (
    "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#BCBD22", "#17BECF", "#AA0DFE", "#3283FE",
    "#85660D", "#782AB6", "#1C8356", "#16FF32", "#F7E1A0", "#F8A19F", "#1CFFCE", "#FC1CBF", "#B00068", "#0D2A63",
    "#86CE00",
)  # fmt: skip


def _slot(value: str) -> int:
    return int.from_bytes(hashlib.sha256(value.encode("utf-8")).digest()[:4], "big") % len(PALETTE)


def colour_map(values: Iterable[str]) -> dict[str, str]:
    """Colour of every value: its hash picks a palette slot; values whose slot is taken (in sorted order) move to
    the next free slot, so up to ``len(PALETTE)`` values never share a colour. Beyond that, colours repeat.

    Pass every value the index holds (all labels, not only those on screen) so that a value keeps its colour in
    every view.
    """
    out: dict[str, str] = {}
    taken: set[int] = set()
    for value in sorted({str(v) for v in values}):
        if value in MISSING_VALUES:
            out[value] = MISSING
            continue
        slot = _slot(value)
        if len(taken) < len(PALETTE):
            while slot in taken:
                slot = (slot + 1) % len(PALETTE)
        taken.add(slot)
        out[value] = PALETTE[slot]
    return out
