"""Synthetic slides tiled on a grid, with vectors stored through ``retrieval.catalog`` (for the where-else heat maps:
tests and ``benchmarks/bench_heatmap.py``)."""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from retrieval.catalog import get_or_create_dataset, store_embeddings
from retrieval.models import EncoderVersion, Image, Slide


def add_tiled_slides(
    session: Session,
    store: object,
    version: EncoderVersion,
    vectors: list[np.ndarray],
    *,
    cols: int,
    tile: int = 256,
    stride: int | None = None,
    dataset: str = "slides",
    skip: set[tuple[int, int, int]] | None = None,
) -> list[list[Image]]:
    """One slide per entry of ``vectors`` (each ``(T, D)``); tile ``t`` of a slide sits at grid row ``t // cols``,
    column ``t % cols`` (origin ``(col·stride, row·stride)``, level 0). ``skip`` holds ``(slide index, row, col)``
    cells left without a tile (background). Returns the stored tile rows per slide."""
    step = stride or tile
    ds = get_or_create_dataset(dataset, session=session)
    out: list[list[Image]] = []
    for s, vecs in enumerate(vectors):
        slide = Slide(dataset_id=ds.id, path=f"/slides/{dataset}-{s}.svs", content_hash=f"{dataset}-slide-{s}",
                      width=cols * step, height=(len(vecs) // cols + 1) * step, mpp_source="default")  # fmt: skip
        session.add(slide)
        session.flush()
        rows: list[Image] = []
        kept: list[int] = []
        for t in range(len(vecs)):
            r, c = divmod(t, cols)
            if skip and (s, r, c) in skip:
                continue
            rows.append(Image(dataset_id=ds.id, content_hash=f"{dataset}-{s}-{t}", source_path=slide.path,
                              slide_id=slide.id, level=0, x=c * step, y=r * step, tile_size=tile, width=tile,
                              height=tile, group=f"slide:{slide.id}"))  # fmt: skip
            kept.append(t)
        session.add_all(rows)
        session.flush()
        store_embeddings(rows, np.asarray(vecs)[kept], version, session=session, store=store)  # type: ignore[arg-type]
        out.append(rows)
    session.commit()
    return out


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``(n, dim)`` random unit vectors, float32."""
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)
