"""Cached calls into ``retrieval`` / ``ingest`` for the pages (``st.cache_data``: results, thumbnails).

The functions take the settings key and the encoder version name as their first arguments so that cached results
never leak between deployments or encoder versions. Arguments starting with ``_`` are not hashed by Streamlit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image as PILImage
from PIL import ImageDraw

from dashboard import data
from dashboard.services import open_retrieval, services_by_key
from dashboard.ui import placeholder_png, to_jpeg, to_png

logger = logging.getLogger(__name__)

RESULT_TTL_S = 600
CHOICES_TTL_S = 60


@dataclass(frozen=True)
class Result:
    """One top-k neighbour."""

    rank: int
    image_id: int
    score: float

    @property
    def distance(self) -> float:
        """The study's distance d = 2 - 2 cos."""
        return 2.0 - 2.0 * self.score


@dataclass(frozen=True)
class PairOutcome:
    """A pair decision as the Pair page shows it."""

    cos: float
    distance: float
    same: bool
    threshold_cos: float
    threshold_source: str


def search_filter(dataset: str | None, label: str | None, slide_id: int | None) -> Any:
    from retrieval.store import SearchFilter

    return SearchFilter(dataset=dataset, label=label, slide_id=slide_id)


def _neighbours(found: Any) -> list[Result]:
    return [Result(rank=i + 1, image_id=int(n.image_id), score=float(n.score)) for i, n in enumerate(found)]


@st.cache_data(ttl=RESULT_TTL_S, max_entries=512, show_spinner="Searching ...")
def top_k_by_id(
    key: str,
    version: str,
    image_id: int,
    k: int,
    dataset: str | None,
    label: str | None,
    slide_id: int | None,
    exclude_same_group: bool = False,
    exclude_self: bool = False,
) -> list[Result]:
    """Top-k of a stored image (its stored vector is the query; the image itself ranks first unless excluded;
    ``exclude_same_group``: no images of its group, see ``Retrieval.top_k``)."""
    with open_retrieval(key, version) as r:
        found = r.top_k(
            int(image_id),
            k=k,
            filter=search_filter(dataset, label, slide_id),
            exclude_same_group=exclude_same_group,
            exclude_self=exclude_self,
        )
    return _neighbours(found)


@st.cache_data(ttl=RESULT_TTL_S, max_entries=128, show_spinner="Embedding the upload and searching ...")
def top_k_by_upload(
    key: str,
    version: str,
    sha256: str,
    _image: PILImage.Image,
    k: int,
    dataset: str | None,
    label: str | None,
    slide_id: int | None,
) -> list[Result]:
    """Top-k of an uploaded image (embedded on the fly); cached by the upload's sha256."""
    with open_retrieval(key, version, need_encoder=True) as r:
        return _neighbours(r.top_k(_image, k=k, filter=search_filter(dataset, label, slide_id)))


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


@st.cache_data(ttl=CHOICES_TTL_S, max_entries=64, show_spinner=False)
def filter_choices(key: str) -> tuple[list[str], list[str], dict[int, str]]:
    """(dataset names, labels, slide id -> file name) for the filter boxes; refreshed every minute, not per rerun
    (the distinct-label scan over 100k images costs tens of ms)."""
    with services_by_key(key).session() as session:
        return (
            data.dataset_names(session=session),
            data.label_names(session=session),
            data.slide_choices(session=session),
        )


@st.cache_data(ttl=CHOICES_TTL_S, max_entries=64, show_spinner=False)
def stored_image_ids(key: str, version_id: int, limit: int = 500) -> list[int]:
    """The first ``limit`` image ids with a vector under the encoder version (the stored-image picker)."""
    with services_by_key(key).session() as session:
        return data.stored_image_ids(version_id, limit=limit, session=session)


@st.cache_data(ttl=RESULT_TTL_S, max_entries=4096, show_spinner=False)
def image_infos(key: str, ids: tuple[int, ...]) -> dict[int, data.ImageInfo]:
    with services_by_key(key).session() as session:
        return data.image_infos(ids, session=session)


def _pixels(key: str, image_id: int) -> PILImage.Image:
    from ingest.stored import image_pixels
    from retrieval.models import Image

    svc = services_by_key(key)
    with svc.session() as session:
        row = session.get(Image, image_id)
        if row is None:
            raise KeyError(image_id)
        return image_pixels(row, max_pixels=svc.settings.max_image_pixels, roots=svc.settings.allowed_roots)


@st.cache_data(ttl=3600, max_entries=5000, show_spinner=False)
def thumbnail(key: str, image_id: int, max_px: int = 160) -> bytes:
    """JPEG thumbnail of a stored image (a grey PNG placeholder when its pixels cannot be read)."""
    info = image_infos(key, (image_id,)).get(image_id)
    if info is None:
        return placeholder_png("unknown image")
    try:
        return to_jpeg(_pixels(key, image_id), max_px)
    except Exception as exc:  # noqa: BLE001 - a moved/deleted source file must not break a gallery
        logger.warning("no thumbnail for image %d (%s): %s", image_id, info.source_path, exc)
        return placeholder_png("file missing")


@st.cache_data(ttl=3600, max_entries=256, show_spinner=False)
def tile_on_slide(key: str, image_id: int, max_px: int = 360) -> bytes | None:
    """PNG of the tile's slide thumbnail with the tile outlined in green (None for a non-tile image)."""
    info = image_infos(key, (image_id,)).get(image_id)
    if info is None or not info.is_tile or info.slide_path is None:
        return None
    from ingest.slides import cached_slide, slide_thumbnail

    thumb = slide_thumbnail(info.slide_path, max_px)
    width = info.slide_width or cached_slide(info.slide_path).dimensions[0]
    scale = thumb.width / float(width)
    x0, y0 = int(info.x or 0) * scale, int(info.y or 0) * scale
    side = max(3.0, float(info.tile_size or 0) * scale)
    draw = ImageDraw.Draw(thumb)
    draw.rectangle([x0, y0, x0 + side, y0 + side], outline=(0, 200, 0), width=3)
    return to_png(thumb, max_px)


@st.cache_data(ttl=24 * 3600, max_entries=16, show_spinner="Computing the map (once per encoder version) ...")
def projection(key: str, version: str, method: str, max_points: int, stored: int) -> Any:
    """The cluster-map projection (disk-cached by ``retrieval.projection``; ``stored`` invalidates this cache)."""
    from retrieval.catalog import active_encoder_version
    from retrieval.projection import load_or_compute

    svc = services_by_key(key)
    with svc.session() as session:
        ver = active_encoder_version(session=session, name=version)
        return load_or_compute(
            ver,
            "umap" if method == "umap" else "pca",
            home=svc.settings.home,
            session=session,
            store=svc.store,
            max_points=max_points,
        )


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


PAIRSET_PREFIX = "pair set: "
DATASET_PREFIX = "generate from labels: "


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
    """Metrics (``retrieval.evaluation.pair_metrics``) at the version's threshold and accuracy/ROC curves."""
    from retrieval import metrics as M
    from retrieval.evaluation import calibration_overlap, pair_metrics

    scored = scored_pairs(key, version, source, n_pairs)
    with open_retrieval(key, version) as r:
        thr = r.threshold()
        overlap = calibration_overlap(r, _as_scored_pairs(scored)) if thr.source == "calibrated" else None
    report = pair_metrics(_as_scored_pairs(scored), thr.cos, n_boot=200)
    report["in_sample"] = overlap or False
    qs = np.unique(np.quantile(scored.scores, np.linspace(0.0, 1.0, curve_points)))
    grid = np.concatenate([[-1.0], qs - 1e-6, [qs[-1] + 1e-6, 1.0 + 1e-6]])
    rows = M.sweep(scored.scores, scored.labels, thresholds_d=list(2.0 - 2.0 * grid))
    curve = sorted((row.as_dict() for row in rows), key=lambda d: d["threshold_cos"])
    return Report(version, float(thr.cos), str(thr.source), report, curve)


def record_evaluation(key: str, version: str, source: str, n_pairs: int = 1000) -> dict[str, Any]:
    """Record an evaluation run (``retrieval.evaluation.evaluate``) of ``version`` on the scored pairs."""
    from retrieval.evaluation import evaluate

    scored = scored_pairs(key, version, source, n_pairs)
    name = source.removeprefix(PAIRSET_PREFIX) if source.startswith(PAIRSET_PREFIX) else None
    with open_retrieval(key, version) as r:  # recorded as in-sample when it is (the page warns before)
        return evaluate(r, _as_scored_pairs(scored), pair_set_name=name, in_sample=True)


# --- Search / Pair additions (issue #13 part A) ---------------------------------------------------------------


@st.cache_data(ttl=RESULT_TTL_S, max_entries=4096, show_spinner=False)
def content_hashes(key: str, ids: tuple[int, ...]) -> dict[int, str]:
    """Image id -> stored content hash (``retrieval.duplicates``), to collapse byte-identical copies."""
    from retrieval.duplicates import content_hashes as hashes

    with services_by_key(key).session() as session:
        return hashes(ids, session=session)


@st.cache_data(ttl=CHOICES_TTL_S, max_entries=64, show_spinner=False)
def decision_threshold(key: str, version: str) -> tuple[float, str]:
    """(threshold cos, source) a pair decision of ``version`` uses: calibrated, else the study's default."""
    with open_retrieval(key, version) as r:
        thr = r.threshold()
    return float(thr.cos), str(thr.source)


#: Longest side of the enlarged view of a stored image (larger images are shown scaled, and say so).
ENLARGE_MAX_PX = 2048


@st.cache_data(ttl=600, max_entries=32, show_spinner="Reading the full-resolution image ...")
def full_image(key: str, image_id: int, max_px: int = ENLARGE_MAX_PX) -> tuple[bytes, tuple[int, int]]:
    """PNG of a stored image at full resolution (scaled down to ``max_px`` only when larger) and its real size."""
    image = _pixels(key, image_id)
    return to_png(image, max_px), image.size


@st.cache_data(ttl=3600, max_entries=256, show_spinner=False)
def slide_with_results(
    key: str, slide_id: int, query_id: int | None, marks: tuple[tuple[int, int], ...], max_px: int = 360
) -> bytes | None:
    """PNG of a slide's thumbnail with the query tile outlined in green and result tiles in orange with their rank.

    Args:
        key: settings key.
        slide_id: the slide.
        query_id: the query tile (outlined in green) when it is on this slide, else None.
        marks: (rank, image id) of the results to mark (tiles of this slide; others are skipped).
        max_px: longest side of the drawing.

    Returns:
        PNG bytes, or None when the slide has no readable file.
    """
    ids = tuple(i for _, i in marks) + ((query_id,) if query_id is not None else ())
    infos = image_infos(key, ids)
    on_slide = {i: info for i, info in infos.items() if info.slide_id == slide_id and info.is_tile}
    any_info = next(iter(on_slide.values()), None)
    if any_info is None or any_info.slide_path is None:
        return None
    from ingest.slides import cached_slide, slide_thumbnail

    thumb = slide_thumbnail(any_info.slide_path, max_px).convert("RGB")
    width = any_info.slide_width or cached_slide(any_info.slide_path).dimensions[0]
    scale = thumb.width / float(width)
    draw = ImageDraw.Draw(thumb)

    def box(info: data.ImageInfo) -> tuple[float, float, float, float]:
        x0, y0 = int(info.x or 0) * scale, int(info.y or 0) * scale
        side = max(3.0, float(info.tile_size or 0) * scale)
        return (x0, y0, x0 + side, y0 + side)

    for rank, image_id in sorted(marks, reverse=True):  # best rank drawn last (on top)
        info = on_slide.get(image_id)
        if info is None or image_id == query_id:
            continue
        x0, y0, x1, y1 = box(info)
        draw.rectangle([x0, y0, x1, y1], outline=(255, 140, 0), width=2)
        draw.text((x0 + 2, y0 + 1), str(rank), fill=(255, 140, 0))
    if query_id is not None and query_id in on_slide:
        draw.rectangle(list(box(on_slide[query_id])), outline=(0, 200, 0), width=3)
    return to_png(thumb, max_px)


def calibration_pair_source(version: data.VersionInfo) -> str | None:
    """The labeled-pair source (``"pair set: NAME"``) the version's threshold was calibrated on, or None."""
    cal = version.calibration or {}
    name = cal.get("pair_set")
    return f"{PAIRSET_PREFIX}{name}" if name else None


@st.cache_data(ttl=3600, max_entries=1024, show_spinner=False)
def stored_query_check(key: str, image_id: int, input_size: int) -> Any:
    """``ingest.query_checks.check_query`` of a stored image (None when its pixels cannot be read)."""
    from ingest.query_checks import check_query

    try:
        image = _pixels(key, image_id)
    except Exception as exc:  # noqa: BLE001 - a missing file is shown as a placeholder elsewhere; no check then
        logger.warning("no query check for image %d: %s", image_id, exc)
        return None
    return check_query(image, input_size)


@st.cache_data(ttl=RESULT_TTL_S, max_entries=128, show_spinner=False)
def upload_query_check(sha256: str, _image: PILImage.Image, input_size: int) -> Any:
    """``ingest.query_checks.check_query`` of an uploaded image, cached by the upload's sha256."""
    from ingest.query_checks import check_query

    return check_query(_image, input_size)


@st.cache_data(ttl=RESULT_TTL_S, max_entries=16, show_spinner=False)
def stored_tiles(key: str, version: str, stored: int) -> Any:
    """Positions of every stored slide tile of ``version`` (``retrieval.occurrence.stored_tiles``; ``stored``, the
    version's vector count, invalidates this cache after an ingestion)."""
    from retrieval.catalog import active_encoder_version
    from retrieval.occurrence import stored_tiles as read_tiles

    with services_by_key(key).session() as session:
        return read_tiles(active_encoder_version(session=session, name=version), session=session)


@st.cache_data(ttl=RESULT_TTL_S, max_entries=64, show_spinner="Scoring every stored tile ...")
def occurrence(key: str, version: str, query_ids: tuple[int, ...], stored: int) -> Any:
    """Heat maps of the mean of the stored tiles ``query_ids`` on every stored slide, slides ranked by best match
    (``retrieval.occurrence.where_else``)."""
    from retrieval.catalog import active_encoder_version
    from retrieval.occurrence import where_else

    svc = services_by_key(key)
    tiles = stored_tiles(key, version, stored)
    with svc.session() as session:
        ver = active_encoder_version(session=session, name=version)
        return where_else(query_ids, ver, session=session, store=svc.store, tiles=tiles)


@st.cache_resource(show_spinner=False)
def _background_projections() -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """Projections being computed in background threads, by (settings key, version, method, points)."""
    return {}


def cached_projection(key: str, version: str, method: str, max_points: int) -> Any:
    """The projection from its disk cache when valid (``retrieval.projection.load_cached``), else None."""
    from retrieval.catalog import active_encoder_version
    from retrieval.projection import load_cached

    svc = services_by_key(key)
    with svc.session() as session:
        ver = active_encoder_version(session=session, name=version)
        return load_cached(ver, "umap" if method == "umap" else "pca", home=svc.settings.home, session=session,
                           max_points=max_points)  # fmt: skip


def background_projection(key: str, version: str, method: str, max_points: int, retry: bool = False) -> dict[str, Any]:
    """Start (once per process) computing a projection in a background thread; its state: ``running`` (bool),
    ``error`` (str or None), ``started`` (time). The result is the disk cache file (:func:`cached_projection`)."""
    import threading
    import time

    jobs = _background_projections()
    job_key = (key, version, method, int(max_points))
    job = jobs.get(job_key)
    if job is not None and (job["running"] or (job["error"] is not None and not retry)):
        return job  # still running, or failed (shown until the user retries)
    job = {"running": True, "error": None, "started": time.time()}
    jobs[job_key] = job

    def work() -> None:
        from retrieval.catalog import active_encoder_version
        from retrieval.projection import load_or_compute

        svc = services_by_key(key)
        try:
            with svc.session() as session:
                ver = active_encoder_version(session=session, name=version)
                load_or_compute(ver, "umap" if method == "umap" else "pca", home=svc.settings.home, session=session,
                                store=svc.store, max_points=max_points)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - shown on the page; the thread must not die silently
            logger.exception("background %s projection of %s failed", method, version)
            job["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            job["running"] = False

    threading.Thread(target=work, name=f"projection-{method}-{version}", daemon=True).start()
    return job


@st.cache_data(ttl=RESULT_TTL_S, max_entries=64, show_spinner=False)
def per_class(key: str, version: str, source: str, n_pairs: int, threshold_cos: float) -> pd.DataFrame:
    """Accuracy of the pair decisions at ``threshold_cos`` per class (pairs involving each class), and recall on the
    same-class pairs: one row per label of the pairs' images."""
    scored = scored_pairs(key, version, source, n_pairs)
    ids = tuple(sorted({i for pair in scored.pairs for i in pair}))
    infos = image_infos(key, ids)
    correct = (scored.scores >= threshold_cos) == scored.labels.astype(bool)
    rows: dict[str, dict[str, int]] = {}
    for i, (a, b) in enumerate(scored.pairs):
        la = infos[a].label if a in infos else None
        lb = infos[b].label if b in infos else None
        for label in {la, lb} - {None}:
            r = rows.setdefault(str(label), {"pairs": 0, "correct": 0, "same pairs": 0, "same correct": 0})
            r["pairs"] += 1
            r["correct"] += int(correct[i])
            if scored.labels[i]:
                r["same pairs"] += 1
                r["same correct"] += int(correct[i])
    return pd.DataFrame(
        [
            {
                "class": label,
                "pairs": r["pairs"],
                "accuracy": r["correct"] / r["pairs"] if r["pairs"] else float("nan"),
                "same-class pairs": r["same pairs"],
                "recall on same-class pairs": r["same correct"] / r["same pairs"] if r["same pairs"] else float("nan"),
            }
            for label, r in sorted(rows.items())
        ],
        columns=["class", "pairs", "accuracy", "same-class pairs", "recall on same-class pairs"],
    )
