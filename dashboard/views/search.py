"""Search page: top-k gallery for a stored or uploaded image, with filters; a result becomes the next query."""

from __future__ import annotations

import random

import pandas as pd
import streamlit as st

from dashboard import data, queries
from dashboard.common import active_version_or_stop, open_services, version_caption
from dashboard.services import Services
from dashboard.ui import Upload, card_html, chunked, image_uploader, shown_errors

ANY = "(any)"
COLUMNS = 5
NEXT_QUERY = "hq_next_query"  # set by other pages / result buttons: the next stored image to search with
ID_INPUT = "search_image_id"
SOURCE = "search_source"


def _use_as_query(image_id: int) -> None:
    st.session_state[NEXT_QUERY] = int(image_id)


def _pick_stored(svc: Services, version: data.VersionInfo) -> int:
    candidates = queries.stored_image_ids(svc.key, version.id, limit=500)
    if ID_INPUT not in st.session_state:
        st.session_state[ID_INPUT] = candidates[0]
    st.number_input("Stored image id", min_value=1, step=1, key=ID_INPUT)
    st.button(
        "Random stored image",
        on_click=lambda: st.session_state.__setitem__(ID_INPUT, random.choice(candidates)),
    )
    return int(st.session_state[ID_INPUT])


def _filters(svc: Services) -> tuple[int, str | None, str | None, int | None, bool, bool]:
    datasets, labels, slides = queries.filter_choices(svc.key)
    k = st.slider("k (results)", min_value=1, max_value=50, value=10, key="search_k")
    dataset = st.selectbox("Dataset", [ANY, *datasets], key="search_dataset")
    label = st.selectbox("Label", [ANY, *labels], key="search_label")
    slide_names = {ANY: None, **{f"{name} (#{sid})": sid for sid, name in slides.items()}}
    slide = st.selectbox("Slide", list(slide_names), key="search_slide")
    exclude = st.checkbox(
        "Exclude own slide",
        key="search_exclude_slide",
        help="For a tile query: only show tiles of other slides than the query's.",
    )
    hide_self = st.checkbox(
        "Hide the query image itself",
        key="search_hide_self",
        help="A stored query is its own best match (cos 1); hide it from the results.",
    )
    return (
        k,
        None if dataset == ANY else dataset,
        None if label == ANY else label,
        slide_names[slide],
        exclude,
        hide_self,
    )


def _show_query(svc: Services, image_id: int | None, upload: Upload | None) -> None:
    if upload is not None:
        st.image(upload.image, caption=f"Upload: {upload.name}", width=220)
        return
    assert image_id is not None
    info = queries.image_infos(svc.key, (image_id,)).get(image_id)
    if info is None:
        return
    st.image(queries.thumbnail(svc.key, image_id, 220), caption=f"#{image_id} · {info.name}")
    st.caption(f"label **{info.label or '-'}** · dataset **{info.dataset}** · slide **{info.slide_name}**")
    outline = queries.tile_on_slide(svc.key, image_id)
    if outline is not None:
        st.image(outline, caption=f"Where the tile sits on {info.slide_name}")


def _gallery(svc: Services, results: list[queries.Result], query_id: int | None) -> None:
    infos = queries.image_infos(svc.key, tuple(r.image_id for r in results))
    for row in chunked(results, COLUMNS):
        cols = st.columns(COLUMNS)
        for col, res in zip(cols, row, strict=False):
            info = infos.get(res.image_id)
            with col.container(border=True):
                # one HTML element per card (thumbnail inline): a new search re-renders 10 elements, not 40, and
                # fetches no separate image files
                meta = ""
                if info is not None:
                    slide = f" · {info.slide_name}" if info.slide_id is not None else ""
                    meta = f"d {res.distance:.3f} · {info.label or 'no label'} · {info.dataset}{slide}"
                alt = info.name if info is not None else f"image {res.image_id}"
                thumb = queries.thumbnail(svc.key, res.image_id)
                st.html(card_html(thumb, f"<b>#{res.rank}</b> · cos <b>{res.score:.3f}</b>", meta, alt))
                if res.image_id != query_id:
                    st.button(
                        "Search with this", key=f"use-{res.image_id}", on_click=_use_as_query, args=(res.image_id,)
                    )
    table = pd.DataFrame(
        [
            {
                "rank": r.rank,
                "image_id": r.image_id,
                "cos": round(r.score, 4),
                "d = 2-2cos": round(r.distance, 4),
                "label": infos[r.image_id].label if r.image_id in infos else None,
                "dataset": infos[r.image_id].dataset if r.image_id in infos else None,
                "slide": infos[r.image_id].slide_name if r.image_id in infos else None,
                "name": infos[r.image_id].name if r.image_id in infos else None,
            }
            for r in results
        ]
    )
    with st.expander("Results as a table"):
        st.dataframe(table, hide_index=True, width="stretch", key="search_results")


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
        source = st.radio("Query", ["Stored image", "Upload"], horizontal=True, key=SOURCE)
        if source == "Stored image":
            image_id = _pick_stored(svc, version)
        else:
            upload = image_uploader("Query image", key="search_upload", max_mb=svc.settings.max_upload_mb)
        with shown_errors("show the query image"):
            if image_id is not None or upload is not None:
                _show_query(svc, image_id, upload)
        st.divider()
        k, dataset, label, slide_id, exclude, hide_self = _filters(svc)
    with right:
        if image_id is None and upload is None:
            st.info("Upload an image (PNG, JPEG, TIFF ...) to search with it, or pick a stored image.")
            return
        with shown_errors("search"):
            if upload is not None:
                results = queries.top_k_by_upload(
                    svc.key, version.name, upload.sha256, upload.image, k, dataset, label, slide_id
                )
            else:
                assert image_id is not None
                results = queries.top_k_by_id(
                    svc.key, version.name, image_id, k, dataset, label, slide_id, exclude, hide_self
                )
            if not results:
                st.warning("No stored image matches these filters: widen them (dataset / label / slide).")
                return
            st.subheader(f"Top {len(results)}")
            _gallery(svc, results, image_id)


render()
