"""Search: top-k of a stored or uploaded image, the filter choices, the decision threshold the cards use, copies to
collapse and the checks of a query image (``Retrieval.top_k``, ``retrieval.duplicates``, ``ingest.query_checks``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import streamlit as st
from PIL import Image as PILImage

from dashboard import data
from dashboard.queries.cache import CHOICES_TTL_S, RESULT_TTL_S
from dashboard.queries.images import pixels
from dashboard.services import open_retrieval, services_by_key

logger = logging.getLogger(__name__)


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


@st.cache_data(ttl=CHOICES_TTL_S, max_entries=64, show_spinner=False)
def decision_threshold(key: str, version: str) -> tuple[float, str]:
    """(threshold cos, source) a pair decision of ``version`` uses: calibrated, else the study's default."""
    with open_retrieval(key, version) as r:
        thr = r.threshold()
    return float(thr.cos), str(thr.source)


@st.cache_data(ttl=RESULT_TTL_S, max_entries=4096, show_spinner=False)
def content_hashes(key: str, ids: tuple[int, ...]) -> dict[int, str]:
    """Image id -> stored content hash (``retrieval.duplicates``), to collapse byte-identical copies."""
    from retrieval.duplicates import content_hashes as hashes

    with services_by_key(key).session() as session:
        return hashes(ids, session=session)


@st.cache_data(ttl=3600, max_entries=1024, show_spinner=False)
def stored_query_check(key: str, image_id: int, input_size: int) -> Any:
    """``ingest.query_checks.check_query`` of a stored image (None when its pixels cannot be read)."""
    from ingest.query_checks import check_query

    try:
        image = pixels(key, image_id)
    except Exception as exc:  # noqa: BLE001 - a missing file is shown as a placeholder elsewhere; no check then
        logger.warning("no query check for image %d: %s", image_id, exc)
        return None
    return check_query(image, input_size)


@st.cache_data(ttl=RESULT_TTL_S, max_entries=128, show_spinner=False)
def upload_query_check(sha256: str, _image: PILImage.Image, input_size: int) -> Any:
    """``ingest.query_checks.check_query`` of an uploaded image, cached by the upload's sha256."""
    from ingest.query_checks import check_query

    return check_query(_image, input_size)
