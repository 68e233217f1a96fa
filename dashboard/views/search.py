"""Search page: top-k gallery for a stored or uploaded image, with filters; a result becomes the next query.

The query and the filters live in the URL (widgets bound to query parameters: a search can be shared and the
browser's back button returns to the previous one) and in the session (they survive a change of page).
"""

from __future__ import annotations

import random

import streamlit as st

from dashboard import data, queries, search_cards
from dashboard.common import active_version_or_stop, open_services, version_caption
from dashboard.services import Services
from dashboard.ui import Upload, image_uploader, shown_errors, upload_given

ANY = "(any)"
NEXT_QUERY = "hq_next_query"  # set by other pages / result buttons: the next stored image to search with
ID_INPUT = "search_image_id"
SOURCE = "search_source"
UPLOAD = "search_upload"
EXCLUDE = "search_exclude_group"
OLD_EXCLUDE = "search_exclude_slide"  # the checkbox's URL key before it was "Exclude same group"
#: With copies collapsed, ask for this many times k so that k distinct images remain.
FETCH_FACTOR = 3
THRESHOLD_SOURCES = {
    "calibrated": "calibrated on labeled pairs",
    "user": "user-given",
    "study-default": "the study's d < 0.705, not calibrated yet",
}


def _use_as_query(image_id: int) -> None:
    st.session_state[NEXT_QUERY] = int(image_id)


def _pick_stored(svc: Services, version: data.VersionInfo) -> int:
    candidates = queries.stored_image_ids(svc.key, version.id, limit=500)
    if ID_INPUT not in st.session_state and ID_INPUT not in st.query_params:
        st.session_state[ID_INPUT] = candidates[0]
    st.number_input("Stored image id", min_value=1, step=1, key=ID_INPUT, bind="query-params", persist_state="session")
    st.button(
        "Random stored image",
        on_click=lambda: st.session_state.__setitem__(ID_INPUT, random.choice(candidates)),
    )
    return int(st.session_state[ID_INPUT])


def _filters(svc: Services) -> tuple[int, str | None, str | None, int | None, bool, bool, bool]:
    datasets, labels, slides = queries.filter_choices(svc.key)
    k = st.slider(
        "k (results)", min_value=1, max_value=50, value=10, key="search_k", bind="query-params", persist_state="session"
    )
    dataset = st.selectbox(
        "Dataset", [ANY, *datasets], key="search_dataset", bind="query-params", persist_state="session"
    )
    label = st.selectbox("Label", [ANY, *labels], key="search_label", bind="query-params", persist_state="session")
    slide_id = st.selectbox(
        "Slide",
        [None, *slides],
        format_func=lambda sid: ANY if sid is None else f"{slides.get(sid, '?')} (#{sid})",
        key="search_slide",
        bind="query-params",  # the value is in the URL (?search_k=5): a search can be shared, back works
        persist_state="session",  # and it survives a change of page
    )
    if OLD_EXCLUDE in st.query_params:  # a link shared before the rename (a bound widget is set through the state)
        st.session_state[EXCLUDE] = st.query_params.pop(OLD_EXCLUDE).lower() in ("true", "1")
    exclude = st.checkbox(
        "Exclude same group",
        key=EXCLUDE,
        help="Never show images of the query's group (its patient / case / source image); a tile's group is its "
        "slide unless the ingestion gave it one, so a tile query shows only tiles of other slides.",
        bind="query-params",  # the value is in the URL (?search_k=5): a search can be shared, back works
        persist_state="session",  # and it survives a change of page
    )
    hide_self = st.checkbox(
        "Hide the query image itself",
        key="search_hide_self",
        help="A stored query is its own best match (cos 1); hide it from the results.",
        bind="query-params",  # the value is in the URL (?search_k=5): a search can be shared, back works
        persist_state="session",  # and it survives a change of page
    )
    show_copies = st.checkbox(
        "Show every copy",
        key="search_show_copies",
        help="Byte-identical images stored in several datasets are one card by default (it lists the datasets); "
        "show each copy as its own result instead.",
        bind="query-params",  # the value is in the URL (?search_k=5): a search can be shared, back works
        persist_state="session",  # and it survives a change of page
    )
    return (
        k,
        None if dataset == ANY else dataset,
        None if label == ANY else label,
        slide_id,
        exclude,
        hide_self,
        show_copies,
    )


def _show_query(svc: Services, image_id: int | None, upload: Upload | None) -> None:
    if upload is not None:
        st.image(upload.image, caption=f"Upload: {upload.name}", width=220)
        return
    assert image_id is not None
    info = queries.image_infos(svc.key, (image_id,)).get(image_id)
    if info is None:
        st.warning(f"No stored image with id {image_id}.")
        return
    st.image(queries.thumbnail(svc.key, image_id, 220), caption=f"#{image_id} · {info.name}")
    parts = [f"label **{info.label or '-'}**", f"dataset **{info.dataset}**", f"slide **{info.slide_name}**"]
    if info.is_tile:
        parts.append(search_cards.tile_text(info))
    st.caption(" · ".join(parts))


def _query_warnings(svc: Services, version: data.VersionInfo, image_id: int | None, upload: Upload | None) -> None:
    """Warn when the query has little or no tissue, is one flat colour, or is far smaller than the encoder input."""
    if upload is not None:
        check = queries.upload_query_check(upload.sha256, upload.image, version.image_size)
    else:
        assert image_id is not None
        check = queries.stored_query_check(svc.key, image_id, version.image_size)
    for text in check.warnings if check is not None else ():
        st.warning(text, icon=":material/warning:")


def render() -> None:
    st.title("Search")
    svc = open_services()
    version = active_version_or_stop(svc)
    version_caption(version)
    if NEXT_QUERY in st.session_state:  # a result / cluster point chosen on the previous run
        st.session_state[ID_INPUT] = st.session_state.pop(NEXT_QUERY)
        st.session_state[SOURCE] = "Stored image"
    left, right = st.columns([1, 3], gap="large")
    image_id: int | None = None
    upload: Upload | None = None
    with left:
        source = st.radio(
            "Query",
            ["Stored image", "Upload"],
            horizontal=True,
            key=SOURCE,
            bind="query-params",
            persist_state="session",
        )
        if source == "Stored image":
            image_id = _pick_stored(svc, version)
        else:
            upload = image_uploader("Query image", key=UPLOAD, max_mb=svc.settings.max_upload_mb)
            st.caption("An uploaded image is not part of the page's link; share a stored image's search instead.")
        with st.container(border=True):
            st.markdown("**Filters**")
            k, dataset, label, slide_id, exclude, hide_self, show_copies = _filters(svc)
        with shown_errors("show the query image"):
            if image_id is not None or upload is not None:
                _show_query(svc, image_id, upload)
        overviews = st.container()
    with right:
        if image_id is None and upload is None:
            if not upload_given(UPLOAD):  # a bad upload has its message on the left: no hint beside it
                st.info("Upload an image (PNG, JPEG, TIFF ...) to search with it, or pick a stored image.")
            return
        with shown_errors("check the query image"):
            _query_warnings(svc, version, image_id, upload)
        shown: list[search_cards.Card] = []  # the overviews below still draw (empty) when the search fails
        with shown_errors("search"):
            fetch = k if show_copies else min(1000, k * FETCH_FACTOR)
            if upload is not None:
                results = queries.top_k_by_upload(
                    svc.key, version.name, upload.sha256, upload.image, fetch, dataset, label, slide_id
                )
            else:
                assert image_id is not None
                results = queries.top_k_by_id(
                    svc.key, version.name, image_id, fetch, dataset, label, slide_id,
                    exclude_same_group=exclude, exclude_self=hide_self,
                )  # fmt: skip
            if not results:
                st.warning("No stored image matches these filters: widen them (dataset / label / slide).")
                return
            shown, hidden = search_cards.cards(svc, results, k, show_copies, image_id)
            threshold_cos, threshold_source = queries.decision_threshold(svc.key, version.name)
            st.subheader(f"Top {len(shown)}")
            n_same = sum(c.result.score >= threshold_cos for c in shown)
            copies = f" · {hidden} byte-identical {'copy' if hidden == 1 else 'copies'} collapsed" if hidden else ""
            st.caption(
                f"**✓ same** marks results at or above the decision threshold cos {threshold_cos:.3f} "
                f"(d ≤ {2 - 2 * threshold_cos:.3f}; {THRESHOLD_SOURCES.get(threshold_source, threshold_source)}): "
                f"{n_same} of {len(shown)}{copies}."
            )
            search_cards.gallery(svc, shown, image_id, threshold_cos, _use_as_query)
    with overviews, shown_errors("draw the slide overview"):
        search_cards.slide_overviews(svc, image_id, shown)


render()
