"""Search result cards: one card per distinct image (byte-identical copies collapsed), the "same" mark at the
decision threshold, tile coordinates, an enlarged full-resolution view, and slide overviews with results marked."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from dashboard import data, queries
from dashboard.services import Services
from dashboard.ui import card_html, chunked
from retrieval.duplicates import CopyGroup, group_copies

COLUMNS = 5
#: How many slides (besides the query's) get an overview with their results marked.
MAX_RESULT_SLIDES = 3


@dataclass(frozen=True)
class Card:
    """What one result card shows: the best-ranked copy and the other byte-identical copies."""

    result: queries.Result
    copies: tuple[queries.Result, ...]

    @property
    def image_id(self) -> int:
        return self.result.image_id


def cards(
    svc: Services, results: list[queries.Result], k: int, show_copies: bool, query_id: int | None = None
) -> tuple[list[Card], int]:
    """Collapse byte-identical copies (same stored content hash) into one card each, keep ``k`` cards.

    A card shows the best-ranked copy, or the query itself when the query is one of the copies (copies tie at the
    same score, so their order among themselves is arbitrary).

    Returns:
        ``(cards, copies hidden)``: with ``show_copies`` every result is its own card and nothing is hidden.
    """
    if show_copies:
        return [Card(r, ()) for r in results[:k]], 0
    hashes = queries.content_hashes(svc.key, tuple(r.image_id for r in results))
    groups: list[CopyGroup] = group_copies([r.image_id for r in results], hashes)[:k]
    out = []
    for g in groups:
        members = [results[p] for p in g.positions]
        lead = next((m for m in members if m.image_id == query_id), members[0])
        shown = queries.Result(rank=members[0].rank, image_id=lead.image_id, score=lead.score)
        out.append(Card(shown, tuple(m for m in members if m is not lead)))
    return out, sum(len(c.copies) for c in out)


def tile_text(info: data.ImageInfo) -> str:
    """``tile (x, y) · 256 px · level 0`` for a slide tile ('' otherwise)."""
    if not info.is_tile:
        return ""
    return f"tile ({info.x}, {info.y}) · {info.tile_size} px · level {info.level or 0}"


@st.dialog("Image at full resolution", width="large")
def enlarge(svc: Services, image_id: int) -> None:
    """The stored image at full resolution (scaled only beyond ``queries.ENLARGE_MAX_PX``) with its details."""
    info = queries.image_infos(svc.key, (image_id,)).get(image_id)
    if info is None:
        st.warning(f"No stored image with id {image_id}.")
        return
    try:
        png, (width, height) = queries.full_image(svc.key, image_id)
    except Exception as exc:  # noqa: BLE001 - a moved file: say so in the dialog, never a traceback
        st.error(f"#{image_id} {info.name}: the stored pixels cannot be read ({exc}).")
        return
    scaled = max(width, height) > queries.ENLARGE_MAX_PX
    note = f" (shown scaled to {queries.ENLARGE_MAX_PX} px)" if scaled else " (full resolution)"
    st.image(png, caption=f"#{image_id} · {info.name} · {width}×{height} px{note}")
    parts = [f"label **{info.label or '-'}**", f"dataset **{info.dataset}**"]
    if info.slide_id is not None:
        parts.append(f"slide **{info.slide_name}**")
    if info.is_tile:
        parts.append(tile_text(info))
    st.caption(" · ".join(parts))
    st.caption(f"File: `{info.source_path}`")


def gallery(
    svc: Services,
    shown: Sequence[Card],
    query_id: int | None,
    threshold_cos: float,
    use_as_query: Callable[[int], None],
) -> None:
    """The result cards, ``COLUMNS`` per row, and the results as a table underneath."""
    ids = tuple({r.image_id for c in shown for r in (c.result, *c.copies)})
    infos = queries.image_infos(svc.key, ids)
    for row in chunked(list(shown), COLUMNS):
        cols = st.columns(COLUMNS)
        for col, card in zip(cols, row, strict=False):
            with col.container(border=True):
                _card(svc, card, infos, threshold_cos)
                if st.button("Enlarge", key=f"enlarge-{card.image_id}", width="stretch"):
                    enlarge(svc, card.image_id)
                if card.image_id != query_id:
                    st.button(
                        "Search with this",
                        key=f"use-{card.image_id}",
                        on_click=use_as_query,
                        args=(card.image_id,),
                        width="stretch",
                    )
    _table(shown, infos, threshold_cos)


def _card(svc: Services, card: Card, infos: dict[int, data.ImageInfo], threshold_cos: float) -> None:
    res = card.result
    info = infos.get(res.image_id)
    same = res.score >= threshold_cos
    badge = (
        '<span style="color:#1b5e20;font-weight:600">✓ same</span>'
        if same
        else '<span style="opacity:0.75">different</span>'
    )
    title = f"<b>#{res.rank}</b> · cos <b>{res.score:.3f}</b> · {badge}"
    lines = [f"d {res.distance:.3f}"]
    alt = f"image {res.image_id}"
    if info is not None:
        alt = info.name
        lines += [info.label or "no label", info.dataset]
        if info.slide_id is not None:
            lines.append(info.slide_name)
    meta = " · ".join(lines)
    thumb = queries.thumbnail(svc.key, res.image_id)
    extra = []
    if info is not None and info.is_tile:
        extra.append(html.escape(tile_text(info)))
    if card.copies:
        where = ", ".join(
            f"{html.escape(infos[c.image_id].dataset)} (#{c.image_id})" if c.image_id in infos else f"#{c.image_id}"
            for c in card.copies
        )
        extra.append(f"byte-identical copy also in: {where}")
    st.html(
        card_html(thumb, title, meta, alt)
        + "".join(f'<p class="hq-card-extra" style="margin:0;font-size:0.8rem;opacity:0.75">{e}</p>' for e in extra)
    )


def _table(shown: Sequence[Card], infos: dict[int, data.ImageInfo], threshold_cos: float) -> None:
    rows = []
    for card in shown:
        for r in (card.result, *card.copies):
            info = infos.get(r.image_id)
            rows.append(
                {
                    "rank": r.rank,
                    "image_id": r.image_id,
                    "cos": round(r.score, 4),
                    "d = 2-2cos": round(r.distance, 4),
                    "same": r.score >= threshold_cos,
                    "copy of": card.image_id if r is not card.result else None,
                    "label": info.label if info else None,
                    "dataset": info.dataset if info else None,
                    "slide": info.slide_name if info else None,
                    "x": info.x if info else None,
                    "y": info.y if info else None,
                    "name": info.name if info else None,
                }
            )
    with st.expander("Results as a table"):
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="search_results")


def slide_overviews(svc: Services, query_id: int | None, shown: Sequence[Card]) -> None:
    """For each slide with results (the query's slide first): its overview with the results' tiles marked."""
    ranked = [(c.result.rank, c.result.image_id) for c in shown]
    infos = queries.image_infos(svc.key, tuple(i for _, i in ranked) + ((query_id,) if query_id else ()))
    query_slide = infos[query_id].slide_id if query_id in infos and infos[query_id].is_tile else None
    slides: list[int] = [query_slide] if query_slide is not None else []
    for _, image_id in ranked:
        info = infos.get(image_id)
        if info is not None and info.is_tile and info.slide_id is not None and info.slide_id not in slides:
            slides.append(info.slide_id)
    slides = slides[: 1 + MAX_RESULT_SLIDES]
    if not slides:
        return
    for slide_id in slides:
        marks = tuple((r, i_) for r, i_ in ranked if infos.get(i_) and infos[i_].slide_id == slide_id)
        png = queries.slide_with_results(svc.key, slide_id, query_id if slide_id == query_slide else None, marks)
        if png is None:
            continue
        name = next(infos[i_].slide_name for _, i_ in marks) if marks else infos[query_id].slide_name  # type: ignore[index]
        ranks = ", ".join(f"#{r}" for r, i_ in marks if i_ != query_id) or "none"
        what = "query tile in green, " if slide_id == query_slide else ""
        st.image(png, caption=f"{name}: {what}results {ranks} in orange")
