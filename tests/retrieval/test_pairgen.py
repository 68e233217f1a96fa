"""Pair generation: balanced, seeded, group-aware, bounded."""

from __future__ import annotations

import pytest

from retrieval.errors import EvaluationError
from retrieval.pairgen import generate_pairs


def test_generate_pairs_balanced_seeded_and_group_aware() -> None:
    labels = [("A", "B", "C")[i % 3] for i in range(60)]
    groups = [i // 4 for i in range(60)]  # 15 "slides" of 4 tiles
    pairs = generate_pairs(labels, 200, groups=groups, exclude_same_group=True, seed=7)
    assert len(pairs) == 200 and sum(p.same for p in pairs) == 100
    assert all((labels[p.a] == labels[p.b]) == p.same for p in pairs)
    assert all(groups[p.a] != groups[p.b] for p in pairs)
    assert len({(min(p.a, p.b), max(p.a, p.b)) for p in pairs}) == 200
    assert pairs == generate_pairs(labels, 200, groups=groups, exclude_same_group=True, seed=7)
    assert pairs != generate_pairs(labels, 200, groups=groups, exclude_same_group=True, seed=8)
    with pytest.raises(EvaluationError, match="two labels"):
        generate_pairs(["A"] * 5, 10)
