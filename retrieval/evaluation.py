"""Calibration and evaluation of an encoder version on labeled pairs.

*Calibrate* chooses the decision threshold on one pair set and stores it (with the metrics it was chosen on) on the
encoder version. *Evaluate* reports on another pair set at the stored threshold and never re-tunes it; evaluating
on images (or groups) the threshold was calibrated on is refused unless ``in_sample=True``, and the report then
says so. :func:`score_dataset_split` splits a dataset by group (seeded) so that one command can calibrate on one
side and report on the other. Pairs generated from a dataset never join two images of one group (patient / case /
slide, ``Image.group``) whenever the dataset has groups. Both record an :class:`retrieval.models.EvalRun`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import select

from retrieval import metrics as M
from retrieval.api import Retrieval
from retrieval.errors import EvaluationError, RetrievalError
from retrieval.groups import count_groups, image_group, split_groups
from retrieval.jsonable import json_safe
from retrieval.models import Dataset, EvalRun, Image, LabeledPair, PairSet, utcnow
from retrieval.pairgen import available_pairs, generate_pairs
from retrieval.pairs_io import PairsFile
from retrieval.resolve import QueryInput
from retrieval.store.base import SearchFilter
from retrieval.thresholds import cos_to_d
from training.pixels import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

Method = Literal["accuracy", "youden"]


@dataclass
class ScoredPairs:
    """Cosine scores of labeled pairs, ready for metrics.

    Attributes:
        scores: (N,) cosine similarities.
        labels: (N,) 1 = same category.
        source: where the pairs came from (CSV path, ``dataset:NAME``, ``folder:PATH``).
        image_ids: (a, b) stored image ids per pair when both are stored (for saving the pair set), else None.
        skipped: messages for pairs that could not be scored (bad rows, unknown images).
        topk: label metrics of top-k retrieval (precision@k, majority-vote@5) when computed.
        info: how the pairs were made, for the report: seed, pairs asked for, groups and whether pairs and top-k
            were group-disjoint, the split; ``warnings`` lists what a reader must know (no groups, a cut request).
    """

    scores: np.ndarray
    labels: np.ndarray
    source: str
    image_ids: list[tuple[int, int]] | None = None
    skipped: list[str] = field(default_factory=list)
    topk: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def score_pairs_file(retrieval: Retrieval, pairs: PairsFile) -> ScoredPairs:
    """Score the labeled rows of a pairs CSV (rows without a label or with unknown images are skipped, listed)."""
    skipped = [f"line {e.line}: {e.message}" for e in pairs.errors]
    rows = [r for r in pairs.rows if r.same is not None]
    skipped += [f"line {r.line}: no 'same' label" for r in pairs.rows if r.same is None]
    results = retrieval.pair_batch([(r.a, r.b) for r in rows])
    scores, labels, ids = [], [], []
    all_ids = True
    for row, res in zip(rows, results, strict=True):
        if res.error is not None:
            skipped.append(f"line {row.line}: {res.error}")
            continue
        scores.append(res.cos)
        labels.append(int(bool(row.same)))
        if isinstance(row.a, int) and isinstance(row.b, int):
            ids.append((row.a, row.b))
        else:
            all_ids = False
    if not scores:
        raise EvaluationError(f"no usable labeled pairs in {pairs.path}: " + "; ".join(skipped[:5]))
    return ScoredPairs(np.array(scores), np.array(labels), str(pairs.path), ids if all_ids else None, skipped)


NO_GROUPS_WARNING = (
    "NO GROUPS: the images of {what} have no patient/case/slide group, so pairs and top-k neighbours may join "
    "near-copies of one patient or slide and the numbers can be inflated; ingest with a manifest group column, "
    "--groups CSV or --group-from REGEX"
)


def _dataset_images(retrieval: Retrieval, dataset: str) -> list[Image]:
    """The labeled, embedded images of ``dataset`` in a stable order: by source path, then tile position, then id.

    Not by id alone: ids follow the order in which ingestion finished, which parallel decoding varies from run to
    run, and the seeded pairs drawn from this list would then differ between two ingestions of the same files.
    """
    session = retrieval.session
    ds = session.scalar(select(Dataset).where(Dataset.name == dataset))
    if ds is None:
        raise EvaluationError(f"no dataset named {dataset!r}: ingest it with `histoquery ingest PATH --dataset NAME`")
    images = list(
        session.scalars(
            select(Image)
            .where(Image.dataset_id == ds.id, Image.label.is_not(None), Image.status == "done")
            .order_by(Image.source_path, Image.level, Image.x, Image.y, Image.id)
        ).all()
    )
    if len(images) < 4:
        raise EvaluationError(f"dataset {dataset!r} has {len(images)} labeled, embedded images: need at least 4")
    return images


def score_dataset(
    retrieval: Retrieval,
    dataset: str,
    *,
    n_pairs: int = 2000,
    seed: int = 0,
    exclude_same_group: bool | None = None,
    topk_queries: int = 500,
) -> ScoredPairs:
    """Generate balanced pairs from a stored dataset's labels and score them (plus top-k label metrics).

    Groups are ``Image.group`` (patient / case / slide; a tile without one is grouped by its slide). By default
    (``exclude_same_group=None``) pairs and top-k neighbours are group-disjoint whenever the dataset has groups; the
    report's ``info`` says how many groups there were and warns when there are none.
    """
    images = _dataset_images(retrieval, dataset)
    return _score_images(
        retrieval, images, dataset, f"dataset:{dataset}", n_pairs=n_pairs, seed=seed,
        exclude_same_group=exclude_same_group, topk_queries=topk_queries,
    )  # fmt: skip


def score_dataset_split(
    retrieval: Retrieval,
    dataset: str,
    *,
    n_pairs: int = 2000,
    seed: int = 0,
    fraction: float = 0.5,
    topk_queries: int = 500,
) -> tuple[ScoredPairs, ScoredPairs]:
    """Split a dataset's images by group (seeded) and score pairs on each side: ``(calibration, held_out)``.

    No group has images on both sides and pairs never join two images of one group; ``fraction`` of the groups
    go to the calibration side. Calibrate on the first, evaluate on the second.

    Raises:
        EvaluationError: fewer than 2 groups, or a side without enough labeled images for balanced pairs.
    """
    images = _dataset_images(retrieval, dataset)
    groups = [_group(img) for img in images]
    if count_groups(groups) == 0:
        raise EvaluationError(
            f"dataset {dataset!r} has no groups to split by: "
            + NO_GROUPS_WARNING.format(what=f"dataset {dataset!r}").removeprefix("NO GROUPS: ")
        )
    try:
        cal_mask, held_mask = split_groups(groups, fraction=fraction, seed=seed)
    except RetrievalError as exc:
        raise EvaluationError(f"dataset {dataset!r}: {exc}") from exc
    out = []
    for name, mask, side_seed in (("calibration", cal_mask, seed), ("held-out", held_mask, seed + 1)):
        side = [img for img, m in zip(images, mask, strict=True) if m]
        if len({img.label for img in side}) < 2:
            raise EvaluationError(
                f"the {name} side of dataset {dataset!r} (seed {seed}) has images of fewer than 2 labels: "
                "use another --seed or --calibration-fraction, or add groups"
            )
        scored = _score_images(
            retrieval, side, dataset, f"dataset:{dataset} ({name} groups, seed {seed})", n_pairs=n_pairs,
            seed=side_seed, exclude_same_group=True, topk_queries=topk_queries,
        )  # fmt: skip
        scored.info["split"] = {
            "side": name,
            "seed": seed,
            "calibration_fraction": fraction,
            "calibration_groups": count_groups([g for g, m in zip(groups, cal_mask, strict=True) if m]),
            "held_out_groups": count_groups([g for g, m in zip(groups, held_mask, strict=True) if m]),
            "calibration_images": int(cal_mask.sum()),
            "held_out_images": int(held_mask.sum()),
        }
        out.append(scored)
    return out[0], out[1]


def _score_images(
    retrieval: Retrieval,
    images: list[Image],
    dataset: str,
    source: str,
    *,
    n_pairs: int,
    seed: int,
    exclude_same_group: bool | None,
    topk_queries: int,
) -> ScoredPairs:
    labels = [img.label for img in images]
    groups = [_group(img) for img in images]
    n_groups = count_groups(groups)
    exclude_same_group = n_groups > 0 if exclude_same_group is None else bool(exclude_same_group)
    info: dict[str, Any] = {
        "seed": seed,
        "n_pairs_requested": n_pairs,
        "images": len(images),
        "groups": n_groups,
        "group_disjoint": exclude_same_group,  # the report's name for it (stored reports keep reading)
        "warnings": [],
    }
    if n_groups == 0:
        info["warnings"].append(NO_GROUPS_WARNING.format(what=source))
        log.warning(NO_GROUPS_WARNING.format(what=source))
    elif not exclude_same_group:
        info["warnings"].append(f"pairs and top-k may join two images of one group ({n_groups} groups): in-group")
    avail_same, avail_diff = available_pairs(labels, groups, exclude_same_group=exclude_same_group)
    pairs = generate_pairs(labels, n_pairs, groups=groups, exclude_same_group=exclude_same_group, seed=seed)
    if len(pairs) < n_pairs - n_pairs % 2:
        info["warnings"].append(
            f"asked for {n_pairs} pairs; {source} allows {2 * min(avail_same, avail_diff)} distinct balanced pairs "
            f"({avail_same} same-label, {avail_diff} different-label"
            f"{', group-disjoint' if exclude_same_group else ''}): drew {len(pairs)}"
        )
    queries: list[tuple[QueryInput, QueryInput]] = [(images[p.a].id, images[p.b].id) for p in pairs]
    results = retrieval.pair_batch(queries)
    keep = [i for i, r in enumerate(results) if r.error is None]
    skipped = [f"pair {queries[i]}: {results[i].error}" for i in range(len(results)) if results[i].error]
    scored = ScoredPairs(
        np.array([results[i].cos for i in keep]),
        np.array([int(pairs[i].same) for i in keep]),
        source,
        [(int(queries[i][0]), int(queries[i][1])) for i in keep],  # type: ignore[arg-type]
        skipped,
        info=info,
    )
    if topk_queries <= 0:
        return scored  # pair metrics only: no top-k label metrics asked for
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=min(topk_queries, len(images)), replace=False)
    q_images = [images[int(i)] for i in chosen]
    neighbours = retrieval.top_k_batch(
        [img.id for img in q_images],
        k=10,
        filter=SearchFilter(dataset=dataset),
        exclude_same_group=exclude_same_group,
        strict=False,
    )
    nl = [[n.label for n in ns] for ns in neighbours]
    scored.topk = topk_metrics(nl, [img.label for img in q_images])
    scored.info["topk_scope"] = f"neighbours ranked within dataset {dataset!r}" + (
        ", never from the query's group" if exclude_same_group else ""
    )
    return scored


def score_folder(
    retrieval: Retrieval, folder: Path, *, n_pairs: int = 2000, seed: int = 0, max_images: int = 5000
) -> ScoredPairs:
    """Embed a labeled folder (``FOLDER/<label>/<image>``) on the fly and score generated balanced pairs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"labeled folder {folder} does not exist: expected FOLDER/<label>/<image files>")
    files = sorted(p for p in folder.glob("*/*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)[:max_images]
    if len(files) < 4:
        raise EvaluationError(f"labeled folder {folder} has {len(files)} images in label subfolders: need at least 4")
    res = retrieval.resolve(list(files))
    keep = [i for i in range(len(files)) if i not in res.errors]
    skipped = [f"{files[i]}: {res.errors[i]}" for i in sorted(res.errors)]
    vectors = res.vectors[keep]
    labels = [files[i].parent.name for i in keep]
    pairs = generate_pairs(labels, n_pairs, seed=seed)
    scores = np.einsum("ij,ij->i", vectors[[p.a for p in pairs]], vectors[[p.b for p in pairs]])
    source = f"folder:{folder}"
    scored = ScoredPairs(
        np.clip(scores, -1, 1), np.array([int(p.same) for p in pairs]), source, None, skipped,
        info={"seed": seed, "n_pairs_requested": n_pairs, "images": len(keep), "groups": 0, "group_disjoint": False,
              "warnings": [NO_GROUPS_WARNING.format(what=source)]},
    )  # fmt: skip
    scored.topk = topk_metrics(*_brute_force_neighbour_labels(vectors, labels, k=10))
    return scored


def topk_metrics(neighbour_labels: Sequence[Sequence[Any]], query_labels: Sequence[Any]) -> dict[str, float]:
    """precision@1/5/10 and majority-vote@5 accuracy."""
    return {
        "precision_at_1": M.precision_at_k(neighbour_labels, query_labels, 1),
        "precision_at_5": M.precision_at_k(neighbour_labels, query_labels, 5),
        "precision_at_10": M.precision_at_k(neighbour_labels, query_labels, 10),
        "majority_vote_at_5": M.majority_vote_accuracy(neighbour_labels, query_labels, 5),
        "n_queries": float(len(query_labels)),
    }


def _brute_force_neighbour_labels(vectors: np.ndarray, labels: list[str], k: int) -> tuple[list[list[str]], list[str]]:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    kk = min(k, len(labels) - 1)
    idx = np.argsort(-sims, axis=1)[:, :kk]
    return [[labels[j] for j in row] for row in idx], labels


def pair_metrics(scored: ScoredPairs, threshold_cos: float, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """All pair metrics at ``threshold_cos`` plus the thresholds the data would choose (reported, not applied)."""
    s, y = scored.scores, scored.labels
    tpr, fpr = M.rates_at(s, y, threshold_cos)
    both = bool(y.any() and not y.all())
    out: dict[str, Any] = {
        "n_pairs": int(len(s)),
        "n_same": int(y.sum()),
        "n_skipped": len(scored.skipped),
        "threshold_cos": threshold_cos,
        "threshold_d": float(cos_to_d(threshold_cos)),
        "accuracy": M.accuracy_at(s, y, threshold_cos),
        "accuracy_ci95": list(M.bootstrap_accuracy_ci(s, y, threshold_cos, n_boot=n_boot, seed=seed)),
        "tpr": tpr,
        "fpr": fpr,
        "best_accuracy_threshold_cos": M.best_accuracy_threshold(s, y),
        "sweep": [r.as_dict() for r in M.sweep(s, y)],
    }
    out["best_accuracy"] = M.accuracy_at(s, y, out["best_accuracy_threshold_cos"])
    if both:
        eer, eer_t = M.equal_error_rate(s, y)
        out.update(
            roc_auc=M.roc_auc(s, y), eer=eer, eer_threshold_cos=eer_t, youden_threshold_cos=M.youden_threshold(s, y)
        )
    if scored.topk:
        out["topk"] = dict(scored.topk)
    for key, value in scored.info.items():
        out[key] = list(value) if isinstance(value, list) else value
    return out


def decision_curve(scores: np.ndarray, labels: np.ndarray, points: int = 300) -> list[dict[str, float]]:
    """Accuracy, TPR and FPR of the pair decisions at about ``points`` thresholds spanning the scores (quantiles,
    plus both ends), ascending by threshold: the curves the dashboard plots.

    Args:
        scores: (N,) cosine similarities.
        labels: (N,) 1 = same category.
        points: number of score quantiles to use as thresholds.

    Returns:
        Rows of ``threshold_cos``, ``threshold_d``, ``accuracy``, ``tpr``, ``fpr`` (``metrics.SweepRow.as_dict``).
    """
    qs = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, points)))
    grid = np.concatenate([[-1.0], qs - 1e-6, [qs[-1] + 1e-6, 1.0 + 1e-6]])
    rows = M.sweep(scores, labels, thresholds_d=list(2.0 - 2.0 * grid))
    return sorted((row.as_dict() for row in rows), key=lambda d: d["threshold_cos"])


#: Columns of :func:`per_class_accuracy`'s rows, in display order.
PER_CLASS_COLUMNS = ("class", "pairs", "accuracy", "same-class pairs", "recall on same-class pairs")


def per_class_accuracy(
    scored: ScoredPairs, threshold_cos: float, label_of: Mapping[int, str | None]
) -> list[dict[str, Any]]:
    """Accuracy of the pair decisions at ``threshold_cos`` per class (the pairs involving each class) and recall on
    its same-class pairs: one row per label of the pairs' images, sorted by label.

    Args:
        scored: scored pairs with ``image_ids``.
        threshold_cos: decision threshold (same when cos >= it).
        label_of: image id -> label (images missing or without a label count for no class).

    Returns:
        Rows keyed by :data:`PER_CLASS_COLUMNS` (``nan`` accuracy / recall when a class has no such pairs).
    """
    labels = np.asarray(scored.labels).astype(bool)
    correct = (np.asarray(scored.scores) >= threshold_cos) == labels
    counts: dict[str, dict[str, int]] = {}
    for i, (a, b) in enumerate(scored.image_ids or []):
        for label in {label_of.get(a), label_of.get(b)} - {None}:
            c = counts.setdefault(str(label), {"pairs": 0, "correct": 0, "same pairs": 0, "same correct": 0})
            c["pairs"] += 1
            c["correct"] += int(correct[i])
            if labels[i]:
                c["same pairs"] += 1
                c["same correct"] += int(correct[i])
    return [
        {
            "class": label,
            "pairs": c["pairs"],
            "accuracy": c["correct"] / c["pairs"] if c["pairs"] else float("nan"),
            "same-class pairs": c["same pairs"],
            "recall on same-class pairs": c["same correct"] / c["same pairs"] if c["same pairs"] else float("nan"),
        }
        for label, c in sorted(counts.items())
    ]


def calibrate(
    retrieval: Retrieval, scored: ScoredPairs, *, method: Method = "accuracy", pair_set_name: str | None = None
) -> dict[str, Any]:
    """Choose the threshold on ``scored`` (best accuracy or Youden) and store it on the encoder version."""
    if len(scored.scores) < 2 or scored.labels.all() or not scored.labels.any():
        raise EvaluationError("calibration needs both 'same' and 'different' pairs (at least one of each)")
    if method == "accuracy":
        thr = M.best_accuracy_threshold(scored.scores, scored.labels)
    elif method == "youden":
        thr = M.youden_threshold(scored.scores, scored.labels)
    else:
        raise EvaluationError(f"unknown calibration method {method!r}: use 'accuracy' or 'youden'")
    thr = float(np.clip(thr, -1.0, 1.0))
    report = pair_metrics(scored, thr)
    report.update(kind="calibrate", method=method, source=scored.source, encoder_version=retrieval.version.name)
    version = retrieval.version
    version.threshold_cos = thr
    version.calibration = {
        "method": method,
        "source": scored.source,
        "n_pairs": report["n_pairs"],
        "accuracy": report["accuracy"],
        "accuracy_ci95": report["accuracy_ci95"],
        "roc_auc": report.get("roc_auc"),
        "eer": report.get("eer"),
        "groups": report.get("groups"),
        "group_disjoint": report.get("group_disjoint"),
        "seed": report.get("seed"),
        "calibrated_at": utcnow().isoformat(),
    }
    _record(retrieval, scored, report, "calibrate", pair_set_name)
    if report.get("pair_set"):  # evaluate() refuses these images (and their groups) unless in_sample
        version.calibration = {**version.calibration, "pair_set": report["pair_set"]}
        retrieval.session.commit()
    log.info("calibrated %s: threshold cos=%.4f (d=%.4f)", version.name, thr, cos_to_d(thr))
    return report


def evaluate(
    retrieval: Retrieval,
    scored: ScoredPairs,
    *,
    threshold: float | None = None,
    threshold_d: float | None = None,
    pair_set_name: str | None = None,
    in_sample: bool = False,
) -> dict[str, Any]:
    """Report metrics at the stored (or a user-given) threshold. Never changes the stored threshold.

    Raises:
        EvaluationError: the threshold was calibrated on these images, on images of the same groups or on the
            same source, and ``in_sample`` is not set (then the report's ``in_sample`` says what overlaps).
    """
    thr = retrieval.threshold(threshold, threshold_d)
    overlap = calibration_overlap(retrieval, scored) if thr.source == "calibrated" else None
    if overlap and not in_sample:
        raise EvaluationError(
            f"refusing to evaluate on {scored.source}: the threshold of {retrieval.version.name} was calibrated on "
            f"{overlap}, so the accuracy would be in-sample. Evaluate on other images (`histoquery evaluate "
            "--labeled DATASET --split group` calibrates and evaluates on disjoint groups in one command) or pass "
            "--in-sample to report it anyway, marked as in-sample"
        )
    report = pair_metrics(scored, thr.cos)
    report.update(
        kind="evaluate", threshold_source=thr.source, source=scored.source, encoder_version=retrieval.version.name
    )
    report["in_sample"] = overlap if overlap else False
    if thr.source == "study-default":
        report["warning"] = "no calibrated threshold: used the study's d=0.705; run with --calibrate on other pairs"
    _record(retrieval, scored, report, "evaluate", pair_set_name)
    return report


def held_out_sources(retrieval: Retrieval) -> tuple[str | None, list[str]]:
    """Where the active version's held-out and in-sample pairs are, for views that open on the held-out side.

    Returns:
        ``(held_out, in_sample)``: the pair set of the newest evaluation of this version that was not in-sample
        (None if there is none), and the calibration's pair set and ``dataset:NAME`` source (never a default).
    """
    version = retrieval.version
    cal = version.calibration or {}
    in_sample = [str(v) for v in (cal.get("pair_set"), cal.get("source")) if v]
    runs = retrieval.session.execute(
        select(EvalRun.metrics, PairSet.name)
        .join(PairSet, PairSet.id == EvalRun.pair_set_id)
        .where(EvalRun.encoder_version_id == version.id, EvalRun.kind == "evaluate")
        .order_by(EvalRun.id.desc())
        .limit(50)
    ).all()
    held = next((str(name) for metrics, name in runs if not (metrics or {}).get("in_sample")), None)
    return held, in_sample


def calibration_overlap(retrieval: Retrieval, scored: ScoredPairs) -> str | None:
    """What ``scored`` shares with the pairs the version's threshold was calibrated on, or None.

    Shared images and shared groups (patient / case / slide) both count; pairs that name no stored images are
    compared by source (the same CSV or folder).
    """
    cal = retrieval.version.calibration or {}
    if scored.image_ids is None or not cal.get("pair_set"):
        return f"the same source {scored.source}" if cal.get("source") == scored.source else None
    session = retrieval.session
    pair_set_id = session.scalar(select(PairSet.id).where(PairSet.name == cal["pair_set"]))
    if pair_set_id is None:
        return f"the same source {scored.source}" if cal.get("source") == scored.source else None
    rows = session.execute(
        select(LabeledPair.image_a_id, LabeledPair.image_b_id).where(LabeledPair.pair_set_id == pair_set_id)
    ).all()
    cal_ids = {int(i) for row in rows for i in row}
    ev_ids = {int(i) for pair in scored.image_ids for i in pair}
    shared = cal_ids & ev_ids
    if shared:
        return f"{len(shared)} of the {len(ev_ids)} images evaluated here (pair set {cal['pair_set']!r})"
    groups = {}
    ids = sorted(cal_ids | ev_ids)
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        for img in session.scalars(select(Image).where(Image.id.in_(chunk))).all():
            groups[int(img.id)] = _group(img)
    shared_groups = ({groups.get(i) for i in cal_ids} & {groups.get(i) for i in ev_ids}) - {None}
    if shared_groups:
        return f"images of {len(shared_groups)} of the groups evaluated here (pair set {cal['pair_set']!r})"
    return None


def _record(
    retrieval: Retrieval, scored: ScoredPairs, report: dict[str, Any], kind: str, pair_set_name: str | None
) -> None:
    session = retrieval.session
    pair_set_id = None
    if scored.image_ids:
        name = pair_set_name or f"{kind}-{scored.source[:150]}-{uuid.uuid4().hex[:8]}"
        pair_set = session.scalar(select(PairSet).where(PairSet.name == name))
        if pair_set is None:
            pair_set = PairSet(name=name, source=scored.source)
            session.add(pair_set)
            session.flush()
            session.add_all(
                LabeledPair(pair_set_id=pair_set.id, image_a_id=a, image_b_id=b, same=bool(lab))
                for (a, b), lab in zip(scored.image_ids, scored.labels, strict=True)
            )
        pair_set_id = pair_set.id
        report["pair_set"] = name
    run = EvalRun(
        encoder_version_id=retrieval.version.id, pair_set_id=pair_set_id, kind=kind, metrics=json_safe(report)
    )
    session.add(run)
    session.commit()
    report["eval_run_id"] = run.id


def _group(img: Image) -> str | None:
    """The image's group (``retrieval.groups.image_group``: ``Image.group``, a tile stored without one: its slide)."""
    return image_group(img.group, img.slide_id)
