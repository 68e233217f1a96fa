"""Labeled pairs generated from labeled items: balanced same/different, seeded, bounded, optionally never within a
group (patient / case / slide: see ``retrieval.groups``)."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.errors import EvaluationError

log = logging.getLogger(__name__)

#: Most pairs one call draws (each side of a balanced set gets half).
MAX_PAIRS = 1_000_000
#: Below this many candidate pairs of a kind, all of them are listed and drawn without replacement (exact, fast);
#: above it, pairs are drawn at random and duplicates / same-group pairs rejected.
_ENUMERATE_LIMIT = 2_000_000


@dataclass(frozen=True)
class GeneratedPair:
    """Indices into the item list and whether the two share a label."""

    a: int
    b: int
    same: bool


def _c2(n: int) -> int:
    return n * (n - 1) // 2


def _group_keys(n: int, groups: Sequence[Hashable | None] | None) -> list[Hashable]:
    return [(("item", i) if groups is None or groups[i] is None else ("group", groups[i])) for i in range(n)]


def available_pairs(
    labels: Sequence[Hashable], groups: Sequence[Hashable | None] | None = None, *, exclude_same_group: bool = False
) -> tuple[int, int]:
    """How many distinct (same-label, different-label) pairs the items allow (same-group pairs excluded if asked)."""
    n = len(labels)
    by_label = Counter(labels)
    same = sum(_c2(c) for c in by_label.values())
    diff = _c2(n) - same
    if exclude_same_group:
        grp = _group_keys(n, groups)
        by_group = Counter(grp)
        by_group_label = Counter(zip(grp, labels, strict=True))
        same_in_group = sum(_c2(c) for c in by_group_label.values())
        same -= same_in_group
        diff -= sum(_c2(c) for c in by_group.values()) - same_in_group
    return same, diff


def generate_pairs(
    labels: Sequence[Hashable],
    n_pairs: int,
    *,
    groups: Sequence[Hashable | None] | None = None,
    exclude_same_group: bool = False,
    seed: int = 0,
) -> list[GeneratedPair]:
    """Draw up to ``n_pairs`` distinct pairs, half same-label and half different-label (balanced), reproducibly.

    The result depends only on ``labels``, ``groups``, ``n_pairs`` and ``seed`` (pass items in a stable order,
    e.g. by id). Asking for more pairs than the items allow is cut down to what they allow (logged); the call
    never loops on an impossible request.

    Args:
        labels: label of each item (index = item).
        n_pairs: how many pairs (rounded down to even; at most :data:`MAX_PAIRS`; fewer if the items cannot give
            that many distinct balanced pairs: see :func:`available_pairs`).
        groups: group of each item (e.g. its patient or slide); with ``exclude_same_group`` two items of one group are
            never paired. ``None`` = own group.
        exclude_same_group: see ``groups``.
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
    if not any(len(v) >= 2 for v in by_label.values()):
        raise EvaluationError("no label has two items: same-label pairs are impossible")
    grp = _group_keys(n, groups)
    avail_same, avail_diff = available_pairs(labels, groups, exclude_same_group=exclude_same_group)
    half = min(n_pairs, MAX_PAIRS) // 2
    possible = min(avail_same, avail_diff)
    if half > possible:
        log.warning(
            "asked for %d pairs but the items allow only %d distinct balanced pairs (%d same-label, %d different-label"
            "%s): drawing %d",
            n_pairs, 2 * possible, avail_same, avail_diff, ", never within a group" if exclude_same_group else "",
            2 * possible,
        )  # fmt: skip
        half = possible
    if half == 0:
        raise EvaluationError(
            "no balanced pair is possible"
            + (
                " without pairing two items of one group: add groups, or items of more groups"
                if exclude_same_group
                else ""
            )
        )
    rng = np.random.default_rng(seed)
    lab_code = np.array(_codes(labels), dtype=np.int64)
    grp_code = np.array(_codes(grp), dtype=np.int64)

    def ok(a: int, b: int) -> bool:
        return a != b and not (exclude_same_group and grp[a] == grp[b])

    raw_same = sum(_c2(len(v)) for v in by_label.values())
    if raw_same <= _ENUMERATE_LIMIT:
        cand = [_triu(np.asarray(m, dtype=np.int64)) for m in by_label.values() if len(m) >= 2]
        a_all = np.concatenate([c[0] for c in cand])
        b_all = np.concatenate([c[1] for c in cand])
        same_pairs = _enumerated(rng, a_all, b_all, grp_code if exclude_same_group else None, half)
    else:
        same_pairs = _sampled_same(rng, by_label, ok, half)
    seen = {(min(a, b), max(a, b)) for a, b in same_pairs}
    if _c2(n) - raw_same <= _ENUMERATE_LIMIT:
        a_all, b_all = _triu(np.arange(n, dtype=np.int64))
        differ = lab_code[a_all] != lab_code[b_all]
        diff_pairs = _enumerated(
            rng, a_all[differ], b_all[differ], grp_code if exclude_same_group else None, len(same_pairs)
        )
    else:
        diff_pairs = _sampled_diff(rng, labels, ok, len(same_pairs), seen)
    same_pairs = same_pairs[: len(diff_pairs)]
    if not same_pairs:
        raise EvaluationError("could not draw any balanced pairs: add items (or drop exclude_same_group)")
    if len(same_pairs) < half:
        log.warning("drew only %d of %d balanced pairs (random draws kept hitting taken or same-group pairs)",
                    2 * len(same_pairs), 2 * half)  # fmt: skip
    pairs = [GeneratedPair(a, b, True) for a, b in same_pairs] + [GeneratedPair(a, b, False) for a, b in diff_pairs]
    order = rng.permutation(len(pairs))
    return [pairs[int(i)] for i in order]


def _codes(values: Sequence[Hashable]) -> list[int]:
    index: dict[Hashable, int] = {}
    return [index.setdefault(v, len(index)) for v in values]


def _triu(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (a, b) with a before b in ``members``."""
    x, y = np.triu_indices(len(members), k=1)
    return members[x], members[y]


def _enumerated(
    rng: np.random.Generator, a: np.ndarray, b: np.ndarray, grp_code: np.ndarray | None, k: int
) -> list[tuple[int, int]]:
    """``k`` of the listed candidate pairs (same-group ones dropped when ``grp_code`` is given), without replacement."""
    if grp_code is not None:
        keep = grp_code[a] != grp_code[b]
        a, b = a[keep], b[keep]
    if len(a) == 0:
        return []
    chosen = rng.choice(len(a), size=min(k, len(a)), replace=False)
    return [(int(a[i]), int(b[i])) for i in chosen]


def _sampled_same(
    rng: np.random.Generator, by_label: dict[Hashable, list[int]], ok: Callable[[int, int], bool], k: int
) -> list[tuple[int, int]]:
    keys = [key for key in by_label if len(by_label[key]) >= 2]
    weights = np.array([len(by_label[key]) for key in keys], dtype=float)
    weights /= weights.sum()
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int]] = []
    budget = 50 * k + 1000
    while len(out) < k and budget > 0:
        budget -= 1
        members = by_label[keys[int(rng.choice(len(keys), p=weights))]]
        a, b = (int(members[j]) for j in rng.choice(len(members), size=2, replace=False))
        key = (min(a, b), max(a, b))
        if ok(a, b) and key not in seen:
            seen.add(key)
            out.append(key)
    return out


def _sampled_diff(
    rng: np.random.Generator,
    labels: Sequence[Hashable],
    ok: Callable[[int, int], bool],
    k: int,
    seen: set[tuple[int, int]],
) -> list[tuple[int, int]]:
    n = len(labels)
    out: list[tuple[int, int]] = []
    budget = 50 * k + 1000
    while len(out) < k and budget > 0:
        budget -= 1
        a, b = (int(v) for v in rng.integers(0, n, size=2))
        key = (min(a, b), max(a, b))
        if labels[a] != labels[b] and ok(a, b) and key not in seen:
            seen.add(key)
            out.append(key)
    return out
