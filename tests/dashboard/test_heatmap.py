"""AppTest of the Where else page: the slide heat map of a query tile is retrieval's cosines, laid out on the grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.heatmap import colours
from dashboard.services import open_retrieval, settings_key
from retrieval.settings import get_settings
from tests.dashboard.conftest import APP_TIMEOUT
from tests.dashboard.test_pages_basic import VIEWS, texts
from tests.support.dashboard_index import SampleIndex


def _page() -> AppTest:
    at = AppTest.from_file(str(VIEWS / "occurrence.py"), default_timeout=APP_TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def _ranking(at: AppTest) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "best cos" in d.value.columns)


def test_where_else_ranks_the_slides_tiles_by_retrievals_cosine(index_env: SampleIndex) -> None:
    tiles = {k: v for k, v in index_env.image_ids.items() if k.startswith("tile:")}
    query, others = tiles["tile:0,0"], [v for k, v in tiles.items() if k != "tile:0,0"]
    at = _page()
    at.number_input(key="occurrence_tile_id").set_value(query).run()
    assert not at.exception, at.exception
    with open_retrieval(settings_key(get_settings())) as r:
        cos = {b: r.pair(query, b).cos for b in others}
    best = max(cos, key=lambda b: cos[b])
    table = _ranking(at)
    assert len(table) == 1 and table["tiles"].iloc[0] == 4
    assert int(table["best tile"].iloc[0]) == best  # the query tile itself (cos 1) is left out of the ranking
    assert float(table["best cos"].iloc[0]) == pytest.approx(cos[best], abs=1e-3)
    assert "4 stored tiles on 1 slides" in texts(at)
    assert f"Query: tile #{query}." in texts(at)


def test_a_position_on_the_slide_picks_the_tile_that_covers_it(index_env: SampleIndex) -> None:
    at = _page()
    at.radio(key="occurrence_how").set_value("Slide and position").run()
    at.number_input(key="occurrence_x").set_value(1100).run()
    at.number_input(key="occurrence_y").set_value(2100).run()
    assert not at.exception, at.exception
    assert f"Query: tile #{index_env.image_ids['tile:1024,2048']}." in texts(at)
    at.number_input(key="occurrence_y").set_value(3000).run()  # below the last tile: background
    assert "No stored tile of this slide covers that position" in "\n".join(w.value for w in at.warning)


def test_use_as_query_makes_the_best_match_the_next_query(index_env: SampleIndex) -> None:
    at = _page()
    best = int(_ranking(at)["best tile"].iloc[0])
    at.button(key="occ-use").click().run()
    assert not at.exception, at.exception
    assert f"Query: tile #{best}." in texts(at)
    assert int(_ranking(at)["best tile"].iloc[0]) != best  # now left out as the query


def test_colours_run_from_low_to_high_and_grey_where_no_tile() -> None:
    rgb = colours(np.array([[0.0, 1.0, np.nan]], dtype=np.float32), 0.0, 1.0)
    assert tuple(rgb[0, 0]) == (68, 1, 84) and tuple(rgb[0, 1]) == (253, 231, 37)
    assert tuple(rgb[0, 2]) == (235, 235, 235)
