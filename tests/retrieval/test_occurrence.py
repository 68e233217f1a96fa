"""Where-else heat maps: one query tile scored against every stored tile, laid out per slide, slides ranked."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.errors import RetrievalError
from retrieval.occurrence import heat_maps, stored_tiles, tile_at, tile_vectors, where_else
from tests.support.retrieval_factory import Catalog
from tests.support.tiled_slides import add_tiled_slides, unit

DIM = 16


def _near(v: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    w = v + noise * rng.normal(size=v.shape).astype(np.float32)
    return (w / np.linalg.norm(w)).astype(np.float32)


def test_heat_maps_place_every_tile_on_its_slide_grid_and_rank_slides_by_best_match(catalog: Catalog) -> None:
    rng = np.random.default_rng(0)
    query = unit(rng, 1, DIM)[0]
    slides = [unit(rng, 12, DIM) for _ in range(3)]  # 3 slides of 3 rows x 4 columns
    slides[0][5] = query  # the query tile: slide 0, row 1, col 1
    slides[2][10] = _near(query, 0.05, rng)  # a close match on slide 2, row 2, col 2
    slides[1][3] = _near(query, 0.1, rng)  # a weaker one on slide 1, row 0, col 3
    rows = add_tiled_slides(catalog.session, catalog.store, catalog.version, slides, cols=4, tile=256,
                            skip={(1, 2, 0)})  # fmt: skip
    query_id = int(rows[0][5].id)

    occ = where_else([query_id], catalog.version, session=catalog.session, store=catalog.store)

    assert occ.n_tiles == 35
    ranked = [s.slide_id for s in occ.slides]
    assert ranked == [rows[2][0].slide_id, rows[1][0].slide_id, rows[0][0].slide_id]
    best = occ.slides[0]
    assert best.best_image_id == rows[2][10].id and best.best_xy == (512, 512)
    assert best.best_score == pytest.approx(float(slides[2][10] @ query), abs=1e-5)
    assert best.scores.shape == (3, 4) and best.stride == 256 and best.origin == (0, 0)
    np.testing.assert_allclose(best.scores.ravel(), slides[2] @ query, atol=1e-5)  # row-major = tile order
    assert best.image_ids[2, 2] == rows[2][10].id
    hole = next(s for s in occ.slides if s.slide_id == rows[1][0].slide_id)
    assert np.isnan(hole.scores[2, 0]) and hole.image_ids[2, 0] == 0 and hole.n_tiles == 11
    assert hole.best_image_id == rows[1][3].id
    own = occ.slides[-1]  # the query's own slide: the query tile is on the map (cos 1) but not its best match
    assert own.scores[1, 1] == pytest.approx(1.0, abs=1e-5)
    assert own.best_image_id != query_id and own.best_score < 0.999


def test_a_box_of_tiles_queries_with_their_mean(catalog: Catalog) -> None:
    rng = np.random.default_rng(1)
    a, b = unit(rng, 2, DIM)
    mean = (a + b) / np.linalg.norm(a + b)
    slides = [unit(rng, 8, DIM), unit(rng, 8, DIM)]
    slides[0][0], slides[0][1] = a, b
    slides[1][6] = mean
    rows = add_tiled_slides(catalog.session, catalog.store, catalog.version, slides, cols=4)
    occ = where_else([rows[0][0].id, rows[0][1].id], catalog.version, session=catalog.session, store=catalog.store)
    top = occ.slides[0]
    assert top.best_image_id == rows[1][6].id and top.best_score == pytest.approx(1.0, abs=1e-5)


def test_overlapping_tiles_use_the_origin_step_as_grid_stride(catalog: Catalog) -> None:
    rng = np.random.default_rng(2)
    rows = add_tiled_slides(catalog.session, catalog.store, catalog.version, [unit(rng, 6, DIM)], cols=3, tile=256,
                            stride=192)  # fmt: skip
    tiles = stored_tiles(catalog.version, session=catalog.session)
    vectors, found = tile_vectors(tiles, store=catalog.store, collection=catalog.version.collection)
    occ = heat_maps(vectors[0], tiles, vectors, found)
    assert occ.slides[0].scores.shape == (2, 3) and occ.slides[0].stride == 192
    sid = int(rows[0][0].slide_id or 0)
    assert tile_at(tiles, sid, 250, 10) == rows[0][1].id  # in tiles 0 and 1: nearer 1's centre
    assert tile_at(tiles, sid, 5000, 10) is None


def test_an_unknown_query_id_is_a_clear_error(catalog: Catalog) -> None:
    rng = np.random.default_rng(3)
    add_tiled_slides(catalog.session, catalog.store, catalog.version, [unit(rng, 4, DIM)], cols=2)
    with pytest.raises(RetrievalError, match="no vector"):
        where_else([99999], catalog.version, session=catalog.session, store=catalog.store)
