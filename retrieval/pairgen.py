"""Labeled pairs generated from labeled items: balanced same/different, seeded, optionally never within a group."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.errors import EvaluationError


@dataclass(frozen=True)
class GeneratedPair:
    """Indices into the item list and whether the two share a label."""

    a: int
    b: int
    same: bool


def generate_pairs(
    labels: Sequence[Hashable],
    n_pairs: int,
    *,
    groups: Sequence[Hashable | None] | None = None,
    never_same_group: bool = False,
    seed: int = 0,
) -> list[GeneratedPair]:
    """Draw ``n_pairs`` distinct pairs, half same-label and half different-label (balanced), reproducibly.

    Args:
        labels: label of each item (index = item).
        n_pairs: how many pairs (rounded down to even; fewer if the items cannot give that many distinct pairs).
        groups: group of each item (e.g. its slide); with ``never_same_group`` two items of one group are never
            paired (tiles of one slide look alike for reasons other than their category). ``None`` = own group.
        never_same_group: see ``groups``.
        seed: random seed.

    Raises:
        EvaluationError: fewer than two labels, or no same-label pair is possible.
    """
    n = len(labels)
    if groups is not None and len(groups) != n:
        raise EvaluationError(f"{n} labels but {len(groups)} groups")
    if n_pairs < 2:
        raise EvaluationError(f"n_pairs={n_pairs}: ask for at least 2 pairs")
    by_label: dict[Hashable, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        by_label[lab].append(i)
    if len(by_label) < 2:
        raise EvaluationError("pair generation needs items of at least two labels")
    grp = [(("item", i) if groups is None or groups[i] is None else groups[i]) for i in range(n)]
    rng = np.random.default_rng(seed)
    half = n_pairs // 2
    label_keys = [k for k in by_label if len(by_label[k]) >= 2]
    if not label_keys:
        raise EvaluationError("no label has two items: same-label pairs are impossible")
    weights = np.array([len(by_label[k]) for k in label_keys], dtype=float)
    weights /= weights.sum()

    def ok(a: int, b: int) -> bool:
        return a != b and not (never_same_group and grp[a] == grp[b])

    seen: set[tuple[int, int]] = set()
    same_pairs: list[GeneratedPair] = []
    diff_pairs: list[GeneratedPair] = []
    budget = 50 * n_pairs + 1000
    while len(same_pairs) < half and budget > 0:
        budget -= 1
        members = by_label[label_keys[int(rng.choice(len(label_keys), p=weights))]]
        a, b = (int(members[j]) for j in rng.choice(len(members), size=2, replace=False))
        key = (min(a, b), max(a, b))
        if ok(a, b) and key not in seen:
            seen.add(key)
            same_pairs.append(GeneratedPair(a, b, True))
    budget = 50 * n_pairs + 1000
    while len(diff_pairs) < len(same_pairs) and budget > 0:
        budget -= 1
        a, b = (int(v) for v in rng.integers(0, n, size=2))
        key = (min(a, b), max(a, b))
        if labels[a] != labels[b] and ok(a, b) and key not in seen:
            seen.add(key)
            diff_pairs.append(GeneratedPair(a, b, False))
    same_pairs = same_pairs[: len(diff_pairs)]
    if not same_pairs:
        raise EvaluationError("could not draw any balanced pairs: add items (or drop never_same_group)")
    pairs = same_pairs + diff_pairs
    order = rng.permutation(len(pairs))
    return [pairs[int(i)] for i in order]
