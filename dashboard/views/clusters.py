"""Clusters page: a 2-D map (PCA as in the study, or UMAP) of the stored embeddings, coloured by label / slide /
dataset; selecting points shows their thumbnails and opens one in Search."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import queries
from dashboard.colours import colour_map
from dashboard.common import active_version_or_stop, open_services, version_caption
from dashboard.services import Services
from dashboard.ui import chunked, shown_errors

METHODS = {"PCA (as in the study)": "pca", "UMAP": "umap"}
COLOUR_BY = {"label": "label", "slide": "slide", "dataset": "dataset"}
SAMPLE_SIZES = (1000, 2000, 5000, 10000)
PER_PAGE = 10
SELECTED = "clusters_selected"  # selected image ids: kept in the session, so they survive leaving the page
SEL_PAGE = "clusters_selection_page"
UMAP_WAIT_S = 3.0


@st.cache_data(ttl=24 * 3600, max_entries=16, show_spinner=False)
def _frame(key: str, version: str, method: str, max_points: int, stored: int) -> pd.DataFrame:
    """The projected points with their metadata (cached with the projection's own key)."""
    proj = queries.projection(key, version, method, max_points, stored)
    ids = [int(i) for i in proj.image_ids]
    infos = queries.image_infos(key, tuple(ids))
    coords = proj.coords
    return pd.DataFrame(
        {
            "x": coords[:, 0].astype(float),
            "y": coords[:, 1].astype(float),
            "image_id": ids,
            "label": [(infos[i].label or "(no label)") if i in infos else "?" for i in ids],
            "dataset": [infos[i].dataset if i in infos else "?" for i in ids],
            "slide": [infos[i].slide_name if i in infos else "?" for i in ids],
            "name": [infos[i].name if i in infos else "?" for i in ids],
        }
    )


def _open_in_search(image_id: int) -> None:
    st.session_state["hq_next_query"] = int(image_id)


def _on_select() -> None:
    """The map's selection changed (click, box, lasso, or cleared with a double click): remember its image ids."""
    event = st.session_state.get("cluster_map")
    points = list(getattr(getattr(event, "selection", None), "points", None) or [])
    if isinstance(event, dict):
        points = list((event.get("selection") or {}).get("points") or [])
    ids: list[int] = []
    for p in points:
        custom = p.get("customdata")
        if custom is not None and len(custom) > 0:
            ids.append(int(custom[0]))
    st.session_state[SELECTED] = list(dict.fromkeys(ids))
    st.session_state[SEL_PAGE] = 1


def _clear_selection() -> None:
    st.session_state[SELECTED] = []


def _selection(svc: Services, frame: pd.DataFrame) -> None:
    ids = [i for i in st.session_state.get(SELECTED, []) if i in set(frame.image_id)]
    if not ids:
        st.caption("Click a point, or draw a box / lasso around several, to see their images and open one in Search.")
        return
    pages = -(-len(ids) // PER_PAGE)
    head, pager, clear = st.columns([3, 2, 1])
    head.markdown(f"**{len(ids)} selected**")
    page = 1
    if pages > 1:
        page = int(pager.number_input(f"Page of the selection (1-{pages})", 1, pages, key=SEL_PAGE))
    clear.button("Clear selection", on_click=_clear_selection)
    shown = ids[(page - 1) * PER_PAGE : page * PER_PAGE]
    if pages > 1:
        st.caption(f"Showing {(page - 1) * PER_PAGE + 1}-{(page - 1) * PER_PAGE + len(shown)} of {len(ids)}.")
    by_id = frame.set_index("image_id")
    for row in chunked(shown, 5):
        for col, image_id in zip(st.columns(5), row, strict=False):
            with col:
                st.image(queries.thumbnail(svc.key, image_id), width="stretch")
                info = by_id.loc[image_id]
                st.caption(f"#{image_id} · {info['label']} · {info['dataset']}")
                if st.button("Open in Search", key=f"open-{image_id}"):
                    _open_in_search(image_id)
                    st.switch_page("views/search.py")


def _colours(svc: Services, frame: pd.DataFrame, colour: str) -> dict[str, str]:
    """Colours of every value the index holds (not only the sampled ones), so a value keeps its colour."""
    datasets, labels, slides = queries.filter_choices(svc.key)
    every = {"label": labels, "dataset": datasets, "slide": list(slides.values())}[colour]
    return colour_map([*every, *frame[colour].unique()])


def _umap_or_pca(svc: Services, version: str, max_points: int) -> str:
    """``"umap"`` when its projection is cached; else start it in the background and show PCA meanwhile."""
    if queries.cached_projection(svc.key, version, "umap", max_points) is not None:
        return "umap"
    retry = st.session_state.pop("clusters_umap_retry", False)
    job = queries.background_projection(svc.key, version, "umap", max_points, retry=retry)
    if job["error"]:
        st.error(f"Could not compute the UMAP map: {job['error']}. Showing PCA.")
        st.button("Retry UMAP", on_click=lambda: st.session_state.__setitem__("clusters_umap_retry", True))
        return "pca"
    _umap_progress(svc, version, max_points)
    return "pca"


@st.fragment(run_every=UMAP_WAIT_S)
def _umap_progress(svc: Services, version: str, max_points: int) -> None:
    import time

    job = queries.background_projection(svc.key, version, "umap", max_points)
    if not job["running"]:
        st.rerun(scope="app")  # the UMAP file is ready (or failed): redraw the page with it
    st.info(
        f"UMAP is being computed in the background (first map of this encoder version, about a minute on 2 cores; "
        f"{time.time() - job['started']:.0f} s so far). Showing PCA meanwhile; the map switches by itself."
    )


def render() -> None:
    st.title("Clusters")
    svc = open_services()
    version = active_version_or_stop(svc)
    version_caption(version)
    c1, c2, c3 = st.columns(3)
    method = METHODS[c1.radio("Projection", list(METHODS), horizontal=True, key="clusters_method")]
    colour = COLOUR_BY[c2.selectbox("Colour by", list(COLOUR_BY), key="clusters_colour")]
    max_points = c3.selectbox("Points shown (sample)", SAMPLE_SIZES, index=2, key="clusters_max_points")
    if version.stored < 3:
        st.info("The map needs at least 3 stored vectors: ingest more images.")
        return
    with shown_errors("compute the cluster map"):
        if method == "umap":
            method = _umap_or_pca(svc, version.name, int(max_points))
        proj = queries.projection(svc.key, version.name, method, int(max_points), version.stored)
        frame = _frame(svc.key, version.name, method, int(max_points), version.stored)
        shown = len(frame)
        note = f"{shown:,} of {proj.total:,} stored vectors" + (" (uniform sample)" if proj.sampled else "")
        if proj.explained_variance:
            ev = proj.explained_variance
            note += f" · PC1 {ev[0]:.1%}, PC2 {ev[1]:.1%} of the variance"
        st.caption(note + (" · cached projection" if proj.from_cache else f" · computed in {proj.seconds:.1f} s"))
        axis = "PC" if method == "pca" else "UMAP "
        colours = _colours(svc, frame, colour)
        fig = px.scatter(
            frame,
            x="x",
            y="y",
            color=colour,
            color_discrete_map=colours,
            category_orders={colour: sorted(frame[colour].unique(), key=lambda v: (colours.get(v) == "#b0b0b0", v))},
            custom_data=["image_id", "label", "dataset", "slide", "name"],
            render_mode="webgl",
            height=620,
            labels={"x": f"{axis}1", "y": f"{axis}2"},
        )
        fig.update_traces(
            marker={"size": 7 if shown <= 2000 else 4, "opacity": 0.8},
            hovertemplate="<b>#%{customdata[0]}</b> · %{customdata[1]}<br>dataset %{customdata[2]}"
            "<br>slide %{customdata[3]}<br>%{customdata[4]}<extra></extra>",
        )
        fig.update_layout(legend_title_text=colour, margin={"l": 10, "r": 10, "t": 30, "b": 10})
        st.plotly_chart(fig, key="cluster_map", on_select=_on_select, selection_mode=("points", "box", "lasso"))
        _selection(svc, frame)


render()
