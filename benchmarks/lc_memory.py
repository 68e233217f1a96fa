"""LC25000 lung decoded once into memory, and the seed-0 group split the in-memory explorations share.

Used by ``quality_sweep.py`` (training recipes) and ``quality_repr.py`` (what to store). Not the product's path:
``quality.py`` is.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "lc25000_lung"
OUT = Path("/tmp/histoquery-sweep")


def decoded_cache() -> Path:
    """LC25000 lung decoded at 224 px once (uint8, with labels and groups) under /tmp/histoquery-sweep."""
    path = OUT / "lc.npz"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader((DATA / "groups.csv").open()))
    imgs = np.zeros((len(rows), 3, 224, 224), np.uint8)
    for i, r in enumerate(rows):
        with Image.open(DATA / r["path"]) as im:
            rgb = im.convert("RGB")
            imgs[i] = np.asarray(rgb if rgb.size == (224, 224) else rgb.resize((224, 224))).transpose(2, 0, 1)
    np.savez(
        path,
        imgs=imgs,
        labels=np.array([r["label"] for r in rows]),
        groups=np.array([r["lc25000_clean_group"] for r in rows]),
    )
    return path


def group_split(labels: np.ndarray, groups: np.ndarray, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """``(A, B, calA, evB)``: per class, half the groups to each side; 600 side-A and 1,000 side-B samples."""
    rng = np.random.default_rng(seed)
    a_idx: list[int] = []
    b_idx: list[int] = []
    for lab in sorted(set(labels)):
        gs = sorted(set(groups[labels == lab]))
        rng.shuffle(gs)
        ga = set(gs[: len(gs) // 2])
        for i in np.flatnonzero(labels == lab):
            (a_idx if groups[i] in ga else b_idx).append(int(i))
    a, b = np.array(a_idx), np.array(b_idx)
    return a, b, rng.choice(a, 600, replace=False), rng.choice(b, 1000, replace=False)
