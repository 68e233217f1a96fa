"""Cached calls into ``retrieval`` / ``ingest`` for the pages, one module per feature, re-exported here so that a
page writes ``queries.top_k_by_id(...)``:

- :mod:`~dashboard.queries.search`: top-k by id / upload, filter choices, picker ids, decision threshold, copies,
  query checks;
- :mod:`~dashboard.queries.pair`: a pair decision;
- :mod:`~dashboard.queries.accuracy`: scored labeled pairs, metrics and curves, per-class accuracy, recording an
  evaluation (also what the Models page compares);
- :mod:`~dashboard.queries.clusters`: the cluster-map projection (the one place for the cluster view's queries);
- :mod:`~dashboard.queries.occurrence`: where-else heat maps;
- :mod:`~dashboard.queries.images`: image facts, thumbnails, full-resolution views, slide overviews;
- :mod:`~dashboard.queries.versions`: the stored-vector counts of the page preamble.

Caching is a thin layer (``st.cache_data`` for results, ``st.cache_resource`` for background jobs): what is not
caching or adapting a result for Streamlit lives in ``retrieval`` / ``ingest``. The functions take the settings key
and the encoder version name as their first arguments so that cached results never leak between deployments or
encoder versions. Arguments starting with ``_`` are not hashed by Streamlit.
"""

from __future__ import annotations

from dashboard.queries.accuracy import (
    DATASET_PREFIX,
    PAIRSET_PREFIX,
    Report,
    Scored,
    calibration_pair_source,
    default_pair_source,
    pair_report,
    pair_sources,
    per_class,
    record_evaluation,
    scored_pairs,
)
from dashboard.queries.cache import CHOICES_TTL_S, RESULT_TTL_S
from dashboard.queries.clusters import background_projection, cached_projection, projection
from dashboard.queries.images import ENLARGE_MAX_PX, full_image, image_infos, slide_with_results, thumbnail
from dashboard.queries.occurrence import occurrence, stored_tiles
from dashboard.queries.pair import PairOutcome, pair
from dashboard.queries.search import (
    Result,
    content_hashes,
    decision_threshold,
    filter_choices,
    search_filter,
    stored_image_ids,
    stored_query_check,
    top_k_by_id,
    top_k_by_upload,
    upload_query_check,
)
from dashboard.queries.versions import stored_counts

__all__ = [
    "CHOICES_TTL_S",
    "DATASET_PREFIX",
    "ENLARGE_MAX_PX",
    "PAIRSET_PREFIX",
    "RESULT_TTL_S",
    "PairOutcome",
    "Report",
    "Result",
    "Scored",
    "background_projection",
    "cached_projection",
    "calibration_pair_source",
    "content_hashes",
    "decision_threshold",
    "default_pair_source",
    "filter_choices",
    "full_image",
    "image_infos",
    "occurrence",
    "pair",
    "pair_report",
    "pair_sources",
    "per_class",
    "projection",
    "record_evaluation",
    "scored_pairs",
    "search_filter",
    "slide_with_results",
    "stored_counts",
    "stored_image_ids",
    "stored_query_check",
    "stored_tiles",
    "thumbnail",
    "top_k_by_id",
    "top_k_by_upload",
    "upload_query_check",
]
