"""Scoring a stored pair set (``PairSet`` + ``LabeledPair`` rows) as :class:`retrieval.evaluation.ScoredPairs`, with
the same top-k label metrics (precision@k) that pairs generated from a dataset get.

The top-k queries are a seeded sample of the pair set's labeled images; each query's neighbours are ranked within
its own dataset and, when the images have groups (patient / case / slide), never from the query's group, as
:func:`retrieval.evaluation.score_dataset` does.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from retrieval.api import Retrieval
from retrieval.errors import EvaluationError
from retrieval.evaluation import ScoredPairs, topk_metrics
from retrieval.groups import count_groups, image_group
from retrieval.models import Dataset, Image, LabeledPair, PairSet
from retrieval.store.base import SearchFilter

PAIR_SET_SOURCE = "pair set: {name}"


def pair_set_rows(name: str, *, retrieval: Retrieval) -> list[tuple[int, int, bool]]:
    """The (image a, image b, same) rows of stored pair set ``name``, in insertion order.

    Raises:
        EvaluationError: no pair set of that name.
    """
    session = retrieval.session
    set_id = session.scalar(select(PairSet.id).where(PairSet.name == name))
    if set_id is None:
        raise EvaluationError(f"no stored pair set named {name!r}: see `histoquery evaluate --help` to store one")
    rows = session.execute(
        select(LabeledPair.image_a_id, LabeledPair.image_b_id, LabeledPair.same)
        .where(LabeledPair.pair_set_id == set_id)
        .order_by(LabeledPair.id)
    ).all()
    return [(int(a), int(b), bool(s)) for a, b, s in rows]


def score_pair_set(retrieval: Retrieval, name: str, *, topk_queries: int = 100, seed: int = 0) -> ScoredPairs:
    """Score stored pair set ``name`` with ``retrieval``'s encoder version, plus top-k label metrics.

    Args:
        retrieval: query API bound to the encoder version to score with.
        name: pair set name.
        topk_queries: how many of the pair set's labeled images are top-k queries (0: no top-k metrics).
        seed: sampling seed of the top-k queries.

    Returns:
        Scores of the pairs whose two images have vectors (the rest are listed in ``skipped``); ``topk`` holds
        precision@1/5/10 when at least one image has a label; ``info['topk_scope']`` says how neighbours were ranked,
        or why there are none.

    Raises:
        EvaluationError: unknown or empty pair set, or no pair with vectors under the version.
    """
    source = PAIR_SET_SOURCE.format(name=name)
    rows = pair_set_rows(name, retrieval=retrieval)
    if not rows:
        raise EvaluationError(f"{source} has no labeled pairs")
    results = retrieval.pair_batch([(a, b) for a, b, _ in rows])
    keep = [i for i, res in enumerate(results) if res.error is None]
    if not keep:
        raise EvaluationError(f"none of the {len(rows)} pairs of {source} has vectors under {retrieval.version.name}")
    scored = ScoredPairs(
        np.array([results[i].cos for i in keep]),
        np.array([int(rows[i][2]) for i in keep]),
        source,
        [(rows[i][0], rows[i][1]) for i in keep],
        [f"pair {rows[i][0]}, {rows[i][1]}: {results[i].error}" for i in range(len(rows)) if results[i].error],
    )
    if topk_queries > 0:
        _add_topk(retrieval, scored, topk_queries, seed)
    return scored


def _add_topk(retrieval: Retrieval, scored: ScoredPairs, topk_queries: int, seed: int) -> None:
    ids = sorted({i for pair in scored.image_ids or [] for i in pair})
    session = retrieval.session
    images: list[tuple[int, str, str | None, str]] = []  # id, label, group, dataset
    for start in range(0, len(ids), 900):
        q = (
            select(Image.id, Image.label, Image.group, Image.slide_id, Dataset.name)
            .join(Dataset, Dataset.id == Image.dataset_id)
            .where(Image.id.in_(ids[start : start + 900]), Image.label.is_not(None))
        )
        for iid, label, group, slide_id, dataset in session.execute(q):
            images.append((int(iid), str(label), image_group(group, slide_id), str(dataset)))
    if not images:
        scored.info["topk_scope"] = "no precision@k: none of the pair set's images has a label"
        return
    images.sort()
    rng = np.random.default_rng(seed)
    chosen = [images[int(i)] for i in rng.choice(len(images), size=min(topk_queries, len(images)), replace=False)]
    exclude_same_group = count_groups([g for _, _, g, _ in images]) > 0
    neighbour_labels: list[list[str | None]] = []
    query_labels: list[str] = []
    for dataset in sorted({d for *_, d in chosen}):
        batch = [c for c in chosen if c[3] == dataset]
        found = retrieval.top_k_batch(
            [c[0] for c in batch],
            k=10,
            filter=SearchFilter(dataset=dataset),
            exclude_same_group=exclude_same_group,
            strict=False,
        )
        neighbour_labels += [[n.label for n in ns] for ns in found]
        query_labels += [c[1] for c in batch]
    scored.topk = topk_metrics(neighbour_labels, query_labels)
    scored.info["topk_scope"] = "neighbours of the pair set's labeled images, ranked within each query's dataset" + (
        ", never from the query's group" if exclude_same_group else ""
    )
