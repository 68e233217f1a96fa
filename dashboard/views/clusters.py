"""Clusters page: a 2-D map (PCA as in the study, or UMAP) of the stored embeddings, coloured by label / slide /
dataset; selecting points shows their thumbnails and opens one in Search."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import queries
from dashboard.common import active_version_or_stop, open_services, version_caption
from dashboard.services import Services
from dashboard.ui import chunked, shown_errors

METHODS = {"PCA (as in the study)": "pca", "UMAP": "umap"}
COLOUR_BY = {"label": "label", "slide": "slide", "dataset": "dataset"}
SAMPLE_SIZES = (1000, 2000, 5000, 10000)
MAX_SELECTED = 10


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


def _selection(svc: Services, frame: pd.DataFrame, event: object) -> None:
    points = list(getattr(getattr(event, "selection", None), "points", None) or [])
    if not points:
        st.caption("Click a point, or draw a box / lasso around several, to see their images and open one in Search.")
        return
    ids: list[int] = []
    for p in points:
        custom = p.get("customdata")
        if custom is not None and len(custom) > 0:
            ids.append(int(custom[0]))
    ids = list(dict.fromkeys(ids))
    st.markdown(f"**{len(ids)} selected**" + (f" (showing {MAX_SELECTED})" if len(ids) > MAX_SELECTED else ""))
    for row in chunked(ids[:MAX_SELECTED], 5):
        for col, image_id in zip(st.columns(5), row, strict=False):
            with col:
                st.image(queries.thumbnail(svc.key, image_id), width="stretch")
                match = frame[frame.image_id == image_id]
                if len(match):
                    st.caption(f"#{image_id} · {match.iloc[0]['label']} · {match.iloc[0]['dataset']}")
                if st.button("Open in Search", key=f"open-{image_id}"):
                    _open_in_search(image_id)
                    st.switch_page("views/search.py")


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
        proj = queries.projection(svc.key, version.name, method, int(max_points), version.stored)
        frame = _frame(svc.key, version.name, method, int(max_points), version.stored)
        shown = len(frame)
        note = f"{shown:,} of {proj.total:,} stored vectors" + (" (uniform sample)" if proj.sampled else "")
        if proj.explained_variance:
            ev = proj.explained_variance
            note += f" · PC1 {ev[0]:.1%}, PC2 {ev[1]:.1%} of the variance"
        st.caption(note + (" · cached projection" if proj.from_cache else f" · computed in {proj.seconds:.1f} s"))
        axis = "PC" if method == "pca" else "UMAP "
        fig = px.scatter(
            frame,
            x="x",
            y="y",
            color=colour,
            custom_data=["image_id"],
            hover_data={
                "image_id": True,
                "label": True,
                "dataset": True,
                "slide": True,
                "name": True,
                "x": False,
                "y": False,
            },
            render_mode="webgl",
            height=620,
            labels={"x": f"{axis}1", "y": f"{axis}2"},
        )
        fig.update_traces(marker={"size": 7 if shown <= 2000 else 4, "opacity": 0.8})
        fig.update_layout(legend_title_text=colour, margin={"l": 10, "r": 10, "t": 30, "b": 10})
        event = st.plotly_chart(fig, key="cluster_map", on_select="rerun", selection_mode=("points", "box", "lasso"))
        _selection(svc, frame, event)


render()
