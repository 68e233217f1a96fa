"""Accuracy (and the Models page's comparison): labeled pairs scored by an encoder version, their metrics and curves,
per-class accuracy, recording an evaluation. Scoring and metrics are ``retrieval.evaluation`` /
``retrieval.pair_sets``; here they are cached and made picklable for ``st.cache_data``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.queries.cache import RESULT_TTL_S
from dashboard.queries.images import image_infos
from dashboard.services import open_retrieval, services_by_key

PAIRSET_PREFIX = "pair set: "
DATASET_PREFIX = "generate from labels: "


@dataclass(frozen=True)
class Scored:
    """Cosine scores of labeled pairs under one encoder version (picklable for ``st.cache_data``)."""

    source: str
    scores: np.ndarray
    labels: np.ndarray
    pairs: tuple[tuple[int, int], ...]
    topk: dict[str, float]
    skipped: int
    info: tuple[tuple[str, Any], ...] = ()  # groups, seed, warnings (``ScoredPairs.info``), hashable


@st.cache_data(ttl=RESULT_TTL_S, max_entries=32, show_spinner="Scoring the labeled pairs ...")
def scored_pairs(key: str, version: str, source: str, n_pairs: int = 1000, seed: int = 0) -> Scored:
    """Score a stored pair set (``"pair set: NAME"``) or pairs generated from a dataset's labels
    (``"generate from labels: DATASET"``) with ``version``."""
    from retrieval.evaluation import score_dataset
    from retrieval.pair_sets import score_pair_set

    with open_retrieval(key, version) as r:
        if source.startswith(PAIRSET_PREFIX):
            scored = score_pair_set(r, source.removeprefix(PAIRSET_PREFIX), topk_queries=100, seed=seed)
        else:
            scored = score_dataset(r, source.removeprefix(DATASET_PREFIX), n_pairs=n_pairs, seed=seed, topk_queries=100)
        return Scored(
            source=source,
            scores=np.asarray(scored.scores),
            labels=np.asarray(scored.labels),
            pairs=tuple((int(a), int(b)) for a, b in (scored.image_ids or [])),
            topk=dict(scored.topk),
            skipped=len(scored.skipped),
            info=tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in scored.info.items()),
        )


def pair_sources(key: str) -> list[str]:
    """Choices for a labeled-pair source: stored pair sets, then datasets whose labels can generate pairs."""
    with services_by_key(key).session() as session:
        sets = [f"{PAIRSET_PREFIX}{name}" for name, n in data.pair_sets(session=session).items() if n > 0]
        generated = [f"{DATASET_PREFIX}{name}" for name in data.labeled_datasets(session=session)]
    return sets + generated


def default_pair_source(key: str, version: str, sources: list[str]) -> tuple[int, set[str]]:
    """Index of the source to open on (the held-out side: the version's newest evaluation that was not in-sample,
    else the first source the threshold was not calibrated on) and the sources that are in-sample."""
    from retrieval.evaluation import held_out_sources

    with open_retrieval(key, version) as r:
        held, cal = held_out_sources(r)
    in_sample = {f"{PAIRSET_PREFIX}{c}" for c in cal} | {
        f"{DATASET_PREFIX}{c.removeprefix('dataset:')}" for c in cal if c.startswith("dataset:")
    }
    if held is not None and f"{PAIRSET_PREFIX}{held}" in sources:
        return sources.index(f"{PAIRSET_PREFIX}{held}"), in_sample
    return next((i for i, src in enumerate(sources) if src not in in_sample), 0), in_sample


def calibration_pair_source(version: data.VersionInfo) -> str | None:
    """The labeled-pair source (``"pair set: NAME"``) the version's threshold was calibrated on, or None."""
    cal = version.calibration or {}
    name = cal.get("pair_set")
    return f"{PAIRSET_PREFIX}{name}" if name else None


@dataclass(frozen=True)
class Report:
    """Pair metrics of one encoder version on one labeled-pair source, plus curves for plotting."""

    version: str
    threshold_cos: float
    threshold_source: str
    metrics: dict[str, Any]
    curve: list[dict[str, float]]  # threshold_cos, threshold_d, accuracy, tpr, fpr (ascending threshold)


def _as_scored_pairs(scored: Scored) -> Any:
    from retrieval.evaluation import ScoredPairs

    return ScoredPairs(
        scores=scored.scores,
        labels=scored.labels,
        source=scored.source,
        image_ids=list(scored.pairs) or None,
        topk=dict(scored.topk),
        info={k: list(v) if isinstance(v, tuple) else v for k, v in scored.info},
    )


@st.cache_data(ttl=RESULT_TTL_S, max_entries=32, show_spinner="Computing the metrics ...")
def pair_report(key: str, version: str, source: str, n_pairs: int = 1000, curve_points: int = 300) -> Report:
    """Metrics (``retrieval.evaluation.pair_metrics``) at the version's threshold and accuracy/ROC curves
    (``retrieval.evaluation.decision_curve``)."""
    from retrieval.evaluation import calibration_overlap, decision_curve, pair_metrics

    scored = scored_pairs(key, version, source, n_pairs)
    with open_retrieval(key, version) as r:
        thr = r.threshold()
        overlap = calibration_overlap(r, _as_scored_pairs(scored)) if thr.source == "calibrated" else None
    report = pair_metrics(_as_scored_pairs(scored), thr.cos, n_boot=200)
    report["in_sample"] = overlap or False
    curve = decision_curve(scored.scores, scored.labels, curve_points)
    return Report(version, float(thr.cos), str(thr.source), report, curve)


def record_evaluation(key: str, version: str, source: str, n_pairs: int = 1000) -> dict[str, Any]:
    """Record an evaluation run (``retrieval.evaluation.evaluate``) of ``version`` on the scored pairs."""
    from retrieval.evaluation import evaluate

    scored = scored_pairs(key, version, source, n_pairs)
    name = source.removeprefix(PAIRSET_PREFIX) if source.startswith(PAIRSET_PREFIX) else None
    with open_retrieval(key, version) as r:  # recorded as in-sample when it is (the page warns before)
        return evaluate(r, _as_scored_pairs(scored), pair_set_name=name, in_sample=True)


@st.cache_data(ttl=RESULT_TTL_S, max_entries=64, show_spinner=False)
def per_class(key: str, version: str, source: str, n_pairs: int, threshold_cos: float) -> pd.DataFrame:
    """Accuracy of the pair decisions at ``threshold_cos`` per class, and recall on the same-class pairs
    (``retrieval.evaluation.per_class_accuracy``): one row per label of the pairs' images."""
    from retrieval.evaluation import PER_CLASS_COLUMNS, per_class_accuracy

    scored = scored_pairs(key, version, source, n_pairs)
    infos = image_infos(key, tuple(sorted({i for pair in scored.pairs for i in pair})))
    rows = per_class_accuracy(_as_scored_pairs(scored), threshold_cos, {i: info.label for i, info in infos.items()})
    return pd.DataFrame(rows, columns=list(PER_CLASS_COLUMNS))
