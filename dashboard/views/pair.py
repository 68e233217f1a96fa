"""Pair page: two images side by side, their cosine, the study's distance d = 2 - 2cos, the decision at the
active encoder's threshold, and where the pair falls on labeled pairs' score distribution."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import streamlit as st

from dashboard import data, pair_confidence, queries
from dashboard.common import active_version_or_stop, open_services, version_caption
from dashboard.services import Services
from dashboard.ui import image_uploader, shown_errors, upload_given

SOURCES = ("Stored image", "Upload")


def _side(svc: Services, version: data.VersionInfo, side: str, default_id: int) -> tuple[str, Any] | None:
    """One side's query as (cache key, query) where query is an image id or a PIL image; None when missing."""
    source = st.radio(f"Image {side}", SOURCES, horizontal=True, key=f"pair_{side}_source", persist_state="session")
    if source == "Stored image":
        id_key = f"pair_{side}_id"
        if id_key not in st.session_state:
            st.session_state[id_key] = default_id
        image_id = int(
            st.number_input(f"Stored image id ({side})", min_value=1, step=1, key=id_key, persist_state="session")
        )
        with shown_errors(f"show image {side}"):
            info = queries.image_infos(svc.key, (image_id,)).get(image_id)
            if info is None:
                st.warning(f"No stored image with id {image_id}.")
                return None
            st.image(queries.thumbnail(svc.key, image_id, 260), caption=f"#{image_id} · {info.name}")
            st.caption(f"label **{info.label or '-'}** · dataset **{info.dataset}** · slide **{info.slide_name}**")
        return f"id:{image_id}", image_id
    upload = image_uploader(f"Image {side}", key=f"pair_{side}_upload", max_mb=svc.settings.max_upload_mb)
    if upload is None:
        return None
    st.image(upload.image, caption=upload.name, width=260)
    return f"sha:{upload.sha256}", upload.image


def _distribution(svc: Services, version: data.VersionInfo, outcome: queries.PairOutcome) -> None:
    sources = queries.pair_sources(svc.key)
    if not sources:
        st.caption("No labeled pairs or labeled datasets yet: the score distribution needs labels.")
        return
    source = st.selectbox("Labeled pairs to compare with", sources, key="pair_distribution_source")
    with shown_errors("score the labeled pairs"):
        scored = queries.scored_pairs(svc.key, version.name, source)
        fig = go.Figure()
        for value, name, colour in ((1, "same category", "#2e7d32"), (0, "different", "#c62828")):
            fig.add_trace(
                go.Histogram(
                    x=scored.scores[scored.labels == value],
                    name=f"{name} pairs",
                    opacity=0.6,
                    marker_color=colour,
                    xbins={"start": -1.0, "end": 1.0, "size": 0.02},
                )
            )
        # the labels sit above the plot on a white box, never over the (dark) bars
        for x, text, colour, dash, y in (
            (outcome.cos, f"this pair {outcome.cos:.3f}", "#1565c0", "solid", 1.02),
            (outcome.threshold_cos, f"threshold {outcome.threshold_cos:.3f}", "#000000", "dash", 1.13),
        ):
            fig.add_vline(x=x, line_width=3 if dash == "solid" else 2, line_dash=dash, line_color=colour)
            fig.add_annotation(
                x=x,
                y=y,
                xref="x",
                yref="paper",
                yanchor="bottom",
                text=text,
                showarrow=False,
                font={"color": colour, "size": 13},
                bgcolor="rgba(255,255,255,0.95)",
                bordercolor=colour,
                borderwidth=1,
                borderpad=3,
            )
        fig.update_layout(
            barmode="overlay",
            height=400,
            xaxis_title="cosine similarity",
            yaxis_title="pairs",
            margin={"l": 10, "r": 10, "t": 70, "b": 10},
            legend={"orientation": "h"},
        )
        st.plotly_chart(fig, key="pair_distribution")
        below = float((scored.scores[scored.labels == 1] <= outcome.cos).mean()) if scored.labels.any() else 0.0
        above = float((scored.scores[scored.labels == 0] >= outcome.cos).mean()) if (scored.labels == 0).any() else 0.0
        st.caption(
            f"{len(scored.scores):,} labeled pairs ({int(scored.labels.sum()):,} same category). {below:.0%} of the "
            f"same-category pairs score lower than this pair; {above:.0%} of the different-category pairs score "
            "at least as high."
        )


def render() -> None:
    st.title("Pair")
    svc = open_services()
    version = active_version_or_stop(svc)
    version_caption(version)
    with svc.session() as session:
        ids = data.stored_image_ids(version.id, limit=2, session=session)
    defaults = (ids[0], ids[-1])
    left, right = st.columns(2, gap="large")
    with left:
        a = _side(svc, version, "A", defaults[0])
    with right:
        b = _side(svc, version, "B", defaults[1])
    if a is None or b is None:
        refused = [
            side
            for side, got in (("A", a), ("B", b))
            if got is None
            and st.session_state.get(f"pair_{side}_source") == "Upload"
            and upload_given(f"pair_{side}_upload")
        ]
        if not refused:  # a refused upload has its own message: no hint beside it
            st.info("Choose two images (stored or uploaded) to compare them.")
        return
    st.divider()
    with shown_errors("compare the pair"):
        outcome = queries.pair(svc.key, version.name, a[0], b[0], a[1], b[1])
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Cosine similarity", f"{outcome.cos:.4f}")
        c2.metric("Distance d = 2 − 2·cos", f"{outcome.distance:.4f}")
        c3.metric("Decision", "same category" if outcome.same else "different")
        with c4, shown_errors("score the calibration pairs"):
            pair_confidence.show(svc, version, outcome)
        source = {
            "calibrated": "calibrated on labeled pairs",
            "user": "user-given",
            "study-default": "the study's d < 0.705, not calibrated yet",
        }.get(outcome.threshold_source, outcome.threshold_source)
        st.caption(
            f"Same category when cos ≥ {outcome.threshold_cos:.4f} (d ≤ {2 - 2 * outcome.threshold_cos:.4f}); "
            f"threshold: {source}."
        )
        _distribution(svc, version, outcome)


render()
