"""Where else page: pick a stored tile (by id, or by slide + position), see on every stored slide a heat map of how
similar each tile is to it, slides ranked by their best match; click a cell to open that tile, or box-select tiles on
a slide to make them the query (their mean vector)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import heatmap, queries
from dashboard.common import active_version_or_stop, open_services, version_caption
from dashboard.services import Services
from dashboard.ui import chunked, shown_errors
from retrieval.occurrence import Occurrence, SlideHeat, TileIndex, tile_at

QUERY = "hq_occurrence_query"  # tuple of stored tile ids (one tile, or a box of tiles)
DETAIL = "occurrence_detail"  # slide id shown in detail
PAGE = "occurrence_page"
TILE_ID = "occurrence_tile_id"
PER_PAGE = 12
COLUMNS = 4


def _set_query(ids: tuple[int, ...]) -> None:
    st.session_state[QUERY] = tuple(int(i) for i in ids)
    st.session_state[PAGE] = 1
    if len(ids) == 1:
        st.session_state[TILE_ID] = int(ids[0])


def _from_tile_id() -> None:
    st.session_state[QUERY] = (int(st.session_state[TILE_ID]),)


def _from_position(tiles: TileIndex) -> None:
    ss = st.session_state
    found = tile_at(tiles, int(ss["occurrence_slide"]), int(ss["occurrence_x"]), int(ss["occurrence_y"]))
    ss["occurrence_missing"] = found is None
    if found is not None:
        _set_query((found,))


def _pick_query(tiles: TileIndex) -> tuple[int, ...]:
    """The query tiles: kept in the session (it survives leaving the page), set by the tile id or slide position
    inputs, a click-through or a box of tiles."""
    ss = st.session_state
    if QUERY not in ss:
        ss[QUERY] = (int(tiles.image_ids[0]),)
    if TILE_ID not in ss:
        ss[TILE_ID] = int(ss[QUERY][0])
    how = st.radio("Query", ["Stored tile id", "Slide and position"], horizontal=True, key="occurrence_how")
    if how == "Stored tile id":
        st.number_input(
            "Stored image id (a slide tile, or any stored image)",
            min_value=1,
            step=1,
            key=TILE_ID,
            on_change=_from_tile_id,
        )
    else:
        names = {sid: path.replace("\\", "/").rsplit("/", 1)[-1] for sid, path in tiles.slide_paths.items()}
        c1, c2, c3 = st.columns([2, 1, 1])
        c1.selectbox("Slide", list(names), format_func=lambda s: f"{names[s]} (#{s})", key="occurrence_slide",
                     on_change=_from_position, args=(tiles,))  # fmt: skip
        c2.number_input("x (level-0 px)", min_value=0, step=64, key="occurrence_x", on_change=_from_position,
                        args=(tiles,))  # fmt: skip
        c3.number_input("y (level-0 px)", min_value=0, step=64, key="occurrence_y", on_change=_from_position,
                        args=(tiles,))  # fmt: skip
        if ss.get("occurrence_missing"):
            st.warning("No stored tile of this slide covers that position: pick a position on tissue.")
    query = tuple(int(i) for i in ss[QUERY])
    if len(query) > 1:
        st.caption(f"Query: the mean of {len(query)} selected tiles.")
        st.button("Back to one tile", on_click=_set_query, args=((query[0],),))
    else:
        st.caption(f"Query: tile #{query[0]}.")
    return query


def _ranking(occ: Occurrence) -> None:
    rows = [
        {
            "rank": i + 1,
            "slide": s.name,
            "slide id": s.slide_id,
            "best cos": round(s.best_score, 4) if np.isfinite(s.best_score) else None,
            "best tile": s.best_image_id,
            "at (x, y)": f"{s.best_xy[0]}, {s.best_xy[1]}",
            "tiles": s.n_tiles,
        }
        for i, s in enumerate(occ.slides)
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="occurrence_ranking")


def _overview(occ: Occurrence) -> None:
    low, high = heatmap.colour_range(occ)
    pages = max(1, -(-len(occ.slides) // PER_PAGE))
    page = int(st.number_input(f"Page (of {pages})", 1, pages, key=PAGE)) if pages > 1 else 1
    shown = occ.slides[(page - 1) * PER_PAGE : page * PER_PAGE]
    st.caption(
        f"Colour: cosine {low:.3f} (dark blue) → {high:.3f} (yellow), the same scale on every slide (the query "
        "tiles, cos 1 with themselves, are not part of the scale); grey = no tile; red outline = the slide's best "
        "match."
    )
    for row in chunked(shown, COLUMNS):
        for col, heat in zip(st.columns(COLUMNS), row, strict=False):
            rank = occ.slides.index(heat) + 1
            with col:
                st.image(heatmap.heat_png(heat, low, high), width="stretch")
                best = f"{heat.best_score:.3f}" if np.isfinite(heat.best_score) else "-"
                st.caption(f"#{rank} · {heat.name} · best cos {best} (tile #{heat.best_image_id})")
                st.button("Details", key=f"occ-detail-{heat.slide_id}", on_click=_show_detail, args=(heat.slide_id,))


def _show_detail(slide_id: int) -> None:
    st.session_state[DETAIL] = int(slide_id)


def _detail_figure(heat: SlideHeat, low: float, high: float, query: tuple[int, ...]) -> go.Figure:
    h, w = heat.scores.shape
    xs = heat.origin[0] + np.arange(w) * heat.stride
    ys = heat.origin[1] + np.arange(h) * heat.stride
    fig = go.Figure(
        go.Heatmap(
            z=heat.scores,
            x=xs,
            y=ys,
            zmin=low,
            zmax=high,
            colorscale=heatmap.COLOURSCALE,
            colorbar={"title": "cos"},
            hoverinfo="skip",
        )
    )
    rr, cc = np.nonzero(heat.image_ids)
    ids = heat.image_ids[rr, cc]
    fig.add_trace(
        go.Scatter(
            x=xs[cc].tolist(),  # plain lists: the click handler reads them back as numbers
            y=ys[rr].tolist(),
            mode="markers",
            marker={"size": 6, "opacity": 0.01, "color": "white"},  # click targets over the cells
            customdata=[[int(i), float(c)] for i, c in zip(ids, heat.scores[rr, cc], strict=True)],
            hovertemplate="tile #%{customdata[0]}<br>x %{x}, y %{y}<br>cos %{customdata[1]:.3f}<extra></extra>",
            showlegend=False,
        )
    )
    in_query = np.isin(ids, np.asarray(query, dtype=np.int64))
    if in_query.any():
        marker = {"symbol": "x", "size": 10, "color": "red"}
        fig.add_trace(
            go.Scatter(
                x=xs[cc][in_query], y=ys[rr][in_query], mode="markers", name="query", marker=marker, hoverinfo="skip"
            )  # fmt: skip
        )
    fig.update_layout(
        height=520,
        yaxis={"autorange": "reversed", "scaleanchor": "x", "title": "y (level-0 px)"},
        xaxis={"title": "x (level-0 px)"},
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def _detail(svc: Services, occ: Occurrence, query: tuple[int, ...]) -> None:
    by_id = {s.slide_id: s for s in occ.slides}
    sid = st.session_state.get(DETAIL)
    if sid not in by_id:
        sid = occ.slides[0].slide_id
    heat = by_id[sid]
    low, high = heatmap.colour_range(occ)
    st.subheader(f"{heat.name} (rank {occ.slides.index(heat) + 1} of {len(occ.slides)})")
    st.caption("Click a tile to see it; drag a box around several to search with their mean.")
    event = st.plotly_chart(
        _detail_figure(heat, low, high, query),
        key=f"occ-map-{sid}",
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
    )
    points = list(getattr(getattr(event, "selection", None), "points", None) or [])
    picked = list(dict.fromkeys(int(p["customdata"][0]) for p in points if p.get("customdata") is not None))
    if len(picked) > 1:
        st.button(f"Search with these {len(picked)} tiles", type="primary", on_click=_set_query, args=(tuple(picked),))
    tile = picked[0] if len(picked) == 1 else heat.best_image_id
    left, right = st.columns([1, 2])
    with left:
        st.image(queries.thumbnail(svc.key, tile, 220), caption=f"tile #{tile}" + (
            " (best match)" if tile == heat.best_image_id and len(picked) != 1 else ""))  # fmt: skip
    with right:
        info = queries.image_infos(svc.key, (tile,)).get(tile)
        if info is not None:
            st.markdown(f"**#{tile}** · {info.slide_name} · x {info.x}, y {info.y} · label {info.label or '-'}")
        c1, c2 = st.columns(2)
        c1.button("Use as query", key="occ-use", on_click=_set_query, args=((tile,),))
        if c2.button("Open in Search", key="occ-search"):
            st.session_state["hq_next_query"] = int(tile)
            st.switch_page("views/search.py")


def render() -> None:
    st.title("Where else")
    st.caption("Where else does this tissue occur? Similarity of every stored tile to the query, slide by slide.")
    svc = open_services()
    version = active_version_or_stop(svc)
    version_caption(version)
    tiles: TileIndex | None = None
    with shown_errors("read the stored slide tiles"):
        tiles = queries.stored_tiles(svc.key, version.name, version.stored)
    if tiles is None:
        return
    query = _pick_query(tiles)
    occ: Occurrence | None = None
    start = time.perf_counter()
    with shown_errors("compute the heat maps"):
        occ = queries.occurrence(svc.key, version.name, query, version.stored)
    if occ is None or not occ.slides:
        return
    st.caption(
        f"{occ.n_tiles:,} stored tiles on {len(occ.slides)} slides · ranked by each slide's best tile (the query "
        f"tiles themselves left out) · {time.perf_counter() - start:.2f} s"
    )
    _ranking(occ)
    _overview(occ)
    _detail(svc, occ, query)


render()
