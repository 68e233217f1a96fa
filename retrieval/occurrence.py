"""Where else does this tissue occur? Per-slide heat maps of one query's similarity to every stored tile.

One query vector (a stored tile, or the mean of several tiles) is scored against every stored tile of the encoder
version with one matrix-vector product: the tiles' vectors come from one ``store.vector_matrix`` read (on the
embedded store a gather from the memory-mapped mirror, :mod:`retrieval.store.mirror`), their positions from one SQL
SELECT. Each slide's scores are laid out on its tile grid (row = y / stride, column = x / stride) and the slides are
ranked by their best tile.

Cost for S slides of T tiles with D-d vectors: one (S·T, D) read and one (S·T, D) @ (D,) product, O(S·T) to build
the grids: 20 slides × 1,000 tiles is 20,000 rows (``benchmarks/bench_heatmap.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from retrieval.errors import EmptyCollectionError, RetrievalError
from retrieval.models import Embedding, EncoderVersion, Image, Slide

#: Largest grid side drawn per slide (a coarser stride is used beyond it, keeping the best tile per cell).
MAX_GRID_SIDE = 400


@dataclass(frozen=True)
class TileIndex:
    """Positions of every stored tile of one encoder version (row-aligned arrays, sorted by slide then id).

    Attributes:
        image_ids: ``(N,)`` int64 tile image ids.
        slide_ids: ``(N,)`` int64 slide ids.
        x, y: ``(N,)`` int64 level-0 pixel origin of each tile.
        tile_size: ``(N,)`` int64 level-0 side of each tile.
        slide_paths: slide id -> slide file path.
    """

    image_ids: np.ndarray
    slide_ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    tile_size: np.ndarray
    slide_paths: dict[int, str]

    def __len__(self) -> int:
        return int(self.image_ids.size)


@dataclass(frozen=True)
class SlideHeat:
    """One slide's heat map for a query.

    Attributes:
        slide_id, path: the slide.
        scores: ``(H, W)`` float32 cosine similarity of each grid cell's tile to the query; NaN where no tile.
        image_ids: ``(H, W)`` int64 tile image id of each cell; 0 where no tile.
        origin: level-0 pixel (x, y) of cell (0, 0).
        stride: level-0 pixels between neighbouring cells.
        best_score: the slide's highest similarity (its rank key).
        best_image_id: the tile with ``best_score``.
        best_xy: level-0 origin of that tile.
        n_tiles: stored tiles of the slide.
    """

    slide_id: int
    path: str
    scores: np.ndarray
    image_ids: np.ndarray
    origin: tuple[int, int]
    stride: int
    best_score: float
    best_image_id: int
    best_xy: tuple[int, int]
    n_tiles: int

    @property
    def name(self) -> str:
        return self.path.replace("\\", "/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Occurrence:
    """Every slide's heat map for one query, best slide first."""

    slides: list[SlideHeat]
    n_tiles: int
    excluded: tuple[int, ...] = ()


def stored_tiles(version: EncoderVersion, *, session: Session, slide_ids: Sequence[int] | None = None) -> TileIndex:
    """Positions of the stored tiles of ``version`` (one SELECT).

    Args:
        version: encoder version whose stored vectors are searched.
        session: SQL session.
        slide_ids: only these slides (default: every slide).

    Raises:
        EmptyCollectionError: the version has no stored slide tiles.
    """
    q = (
        select(Image.id, Image.slide_id, Image.x, Image.y, Image.tile_size)
        .join(Embedding, (Embedding.image_id == Image.id) & (Embedding.encoder_version_id == version.id))
        .where(Image.slide_id.is_not(None), Image.x.is_not(None), Image.y.is_not(None))
        .order_by(Image.slide_id, Image.id)
    )
    if slide_ids is not None:
        q = q.where(Image.slide_id.in_([int(s) for s in slide_ids]))
    rows = session.execute(q).all()
    if not rows:
        raise EmptyCollectionError(
            f"encoder version {version.name!r} has no stored slide tiles: ingest slides first (histoquery ingest "
            "<folder of .svs/.tif slides>)"
        )
    arr = np.array([(r[0], r[1], r[2], r[3], r[4] or 0) for r in rows], dtype=np.int64)
    wanted = sorted({int(s) for s in arr[:, 1]})
    paths = {int(k): str(v) for k, v in session.execute(select(Slide.id, Slide.path).where(Slide.id.in_(wanted)))}
    return TileIndex(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], paths)


def tile_vectors(tiles: TileIndex, *, store: object, collection: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, D)`` float32 vectors of the tiles (one ``vector_matrix`` read) and the ``(N,)`` found mask."""
    vectors, found = store.vector_matrix(collection, tiles.image_ids)  # type: ignore[attr-defined]
    return np.asarray(vectors, dtype=np.float32), np.asarray(found, dtype=bool)


def query_vector(vectors: np.ndarray) -> np.ndarray:
    """The L2-normalised mean of ``(K, D)`` vectors (a box of tiles as one query), shape ``(D,)``.

    Raises:
        RetrievalError: no vectors, or they cancel out.
    """
    arr = np.asarray(vectors, dtype=np.float32).reshape(-1, np.asarray(vectors).shape[-1])
    if arr.shape[0] == 0:
        raise RetrievalError("no query tiles: select at least one stored tile")
    mean = arr.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if not np.isfinite(norm) or norm == 0.0:
        raise RetrievalError("the selected tiles' vectors cancel out: select fewer or other tiles")
    return (mean / norm).astype(np.float32)


def _stride(xs: np.ndarray, ys: np.ndarray, sizes: np.ndarray) -> int:
    """Grid stride: the smallest positive gap between tile origins (tiles with overlap sit closer than their size)."""
    gaps = [np.diff(np.unique(v)) for v in (xs, ys)]
    pos = np.concatenate([g[g > 0] for g in gaps]) if gaps else np.zeros(0)
    if pos.size:
        return max(1, int(pos.min()))
    return max(1, int(sizes.max()) if sizes.size else 1)


def _slide_heat(slide_id: int, path: str, scores: np.ndarray, ids: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                sizes: np.ndarray) -> SlideHeat:  # fmt: skip
    stride = _stride(xs, ys, sizes)
    x0, y0 = int(xs.min()), int(ys.min())
    span = max(int(xs.max()) - x0, int(ys.max()) - y0) // stride + 1
    if span > MAX_GRID_SIDE:  # irregular origins: coarsen so the grid stays drawable
        stride = int(np.ceil((max(int(xs.max()) - x0, int(ys.max()) - y0) + 1) / MAX_GRID_SIDE))
    cols = (xs - x0) // stride
    rows = (ys - y0) // stride
    h, w = int(rows.max()) + 1, int(cols.max()) + 1
    grid = np.full((h, w), np.nan, dtype=np.float32)
    cell_ids = np.zeros((h, w), dtype=np.int64)
    order = np.argsort(scores, kind="stable")  # ascending: the best tile of a cell is written last and wins
    grid[rows[order], cols[order]] = scores[order]
    cell_ids[rows[order], cols[order]] = ids[order]
    best = int(np.argmax(scores))
    return SlideHeat(
        slide_id=slide_id,
        path=path,
        scores=grid,
        image_ids=cell_ids,
        origin=(x0, y0),
        stride=stride,
        best_score=float(scores[best]),
        best_image_id=int(ids[best]),
        best_xy=(int(xs[best]), int(ys[best])),
        n_tiles=int(ids.size),
    )


def heat_maps(
    query: np.ndarray,
    tiles: TileIndex,
    vectors: np.ndarray,
    found: np.ndarray | None = None,
    *,
    exclude_image_ids: Sequence[int] = (),
) -> Occurrence:
    """Per-slide similarity grids of ``query`` (D,) against the tiles' ``vectors`` (N, D), slides ranked by their
    best tile (ties: lower slide id first).

    Args:
        query: ``(D,)`` L2-normalised query vector.
        tiles: tile positions, row-aligned with ``vectors``.
        vectors: ``(N, D)`` L2-normalised tile vectors.
        found: ``(N,)`` mask of rows that hold a vector (others are left out of the maps).
        exclude_image_ids: tiles left out of the ranking (the query tiles themselves: they would always win).
            They still appear on their slide's grid.

    Raises:
        RetrievalError: the query's dimension differs from the tiles'.
    """
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if vectors.ndim != 2 or vectors.shape[1] != q.size:
        raise RetrievalError(f"query has {q.size} dimensions, the stored tiles {vectors.shape[-1]}: same encoder?")
    scores = vectors @ q
    keep = np.ones(len(tiles), dtype=bool) if found is None else np.asarray(found, dtype=bool).copy()
    rank_scores = np.where(np.isin(tiles.image_ids, np.asarray(exclude_image_ids, dtype=np.int64)), -np.inf, scores)
    slides: list[SlideHeat] = []
    sids = tiles.slide_ids
    bounds = np.flatnonzero(np.diff(sids)) + 1  # tiles are sorted by slide
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(sids)], strict=True):
        m = keep[start:stop]
        if not m.any():
            continue
        sl = slice(start, stop)
        sid = int(sids[start])
        heat = _slide_heat(sid, tiles.slide_paths.get(sid, f"slide {sid}"), scores[sl][m], tiles.image_ids[sl][m],
                           tiles.x[sl][m], tiles.y[sl][m], tiles.tile_size[sl][m])  # fmt: skip
        ranked = rank_scores[sl][m]
        if np.isfinite(ranked).any() and not np.isfinite(ranked).all():  # the query tile sits on this slide
            best = int(np.argmax(ranked))
            heat = replace(
                heat,
                best_score=float(ranked[best]),
                best_image_id=int(tiles.image_ids[sl][m][best]),
                best_xy=(int(tiles.x[sl][m][best]), int(tiles.y[sl][m][best])),
            )
        elif not np.isfinite(ranked).any():  # only query tiles on this slide: nothing else to find there
            heat = replace(heat, best_score=float("-inf"))
        slides.append(heat)
    slides.sort(key=lambda s: (-s.best_score, s.slide_id))
    return Occurrence(slides=slides, n_tiles=int(keep.sum()), excluded=tuple(int(i) for i in exclude_image_ids))


def where_else(
    query_image_ids: Sequence[int],
    version: EncoderVersion,
    *,
    session: Session,
    store: object,
    tiles: TileIndex | None = None,
) -> Occurrence:
    """Heat maps on every stored slide for the mean of the stored tiles ``query_image_ids`` (one tile, or a box).

    Args:
        query_image_ids: stored image ids (tiles or not) under ``version``.
        version: encoder version.
        session: SQL session.
        store: vector store (``vector_matrix``).
        tiles: a :func:`stored_tiles` answer to reuse (default: read now).

    Raises:
        RetrievalError: a query id without a stored vector; no stored tiles.
    """
    ids = np.asarray([int(i) for i in query_image_ids], dtype=np.int64)
    qv, qfound = store.vector_matrix(version.collection, ids)  # type: ignore[attr-defined]
    missing = ids[~np.asarray(qfound, dtype=bool)]
    if missing.size:
        raise RetrievalError(
            f"image(s) {', '.join(map(str, missing.tolist()))} have no vector under {version.name!r}: pick stored tiles"
        )
    tiles = tiles if tiles is not None else stored_tiles(version, session=session)
    vectors, found = tile_vectors(tiles, store=store, collection=version.collection)
    return heat_maps(query_vector(qv), tiles, vectors, found, exclude_image_ids=ids.tolist())


def tile_at(tiles: TileIndex, slide_id: int, x: int, y: int) -> int | None:
    """The stored tile of ``slide_id`` that contains level-0 pixel (x, y) (the nearest origin when several do, e.g.
    with overlap), or None."""
    m = tiles.slide_ids == int(slide_id)
    if not m.any():
        return None
    xs, ys, sizes, ids = tiles.x[m], tiles.y[m], tiles.tile_size[m], tiles.image_ids[m]
    inside = (xs <= x) & (x < xs + np.maximum(sizes, 1)) & (ys <= y) & (y < ys + np.maximum(sizes, 1))
    if not inside.any():
        return None
    cand = np.flatnonzero(inside)
    d = (xs[cand] + sizes[cand] / 2 - x) ** 2 + (ys[cand] + sizes[cand] / 2 - y) ** 2
    return int(ids[cand[int(np.argmin(d))]])
