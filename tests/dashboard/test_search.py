"""AppTest of the Search page on the sample index."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.dashboard.test_pages_basic import VIEWS, texts
from tests.support.dashboard_index import SampleIndex


def results_table(at: AppTest):  # noqa: ANN201 - a pandas DataFrame
    tables = [d.value for d in at.dataframe if "rank" in d.value.columns]
    assert len(tables) == 1, "expected one results table"
    return tables[0]


def test_search_first_result_is_the_query_with_cosine_one(index_env: SampleIndex) -> None:
    query = index_env.image_ids["tfdspng_image_0_label_0.png"]
    at = AppTest.from_file(str(VIEWS / "search.py"), default_timeout=120)
    at.session_state["search_image_id"] = query
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    table = results_table(at)
    assert len(table) == 10
    assert int(table["image_id"].iloc[0]) == query
    assert abs(float(table["cos"].iloc[0]) - 1.0) < 1e-3
    assert list(table["rank"]) == list(range(1, 11))
    assert (table["cos"].diff().dropna() <= 1e-6).all()  # best first
    assert "Top 10" in [s.value for s in at.subheader]


def test_search_filters_k_and_hide_self(index_env: SampleIndex) -> None:
    query = index_env.image_ids["tfdspng_image_0_label_0.png"]
    at = AppTest.from_file(str(VIEWS / "search.py"), default_timeout=120)
    at.session_state["search_image_id"] = query
    at.run()
    at.slider(key="search_k").set_value(5)
    at.selectbox(key="search_label").set_value("02_STROMA")
    at.checkbox(key="search_hide_self").check()
    at.run()
    assert not at.exception and not at.error
    table = results_table(at)
    assert len(table) == 5
    assert set(table["label"]) == {"02_STROMA"}
    assert query not in set(table["image_id"])


def test_result_button_makes_it_the_next_query(index_env: SampleIndex) -> None:
    query = index_env.image_ids["tfdspng_image_0_label_0.png"]
    at = AppTest.from_file(str(VIEWS / "search.py"), default_timeout=120)
    at.session_state["search_image_id"] = query
    at.run()
    second = int(results_table(at)["image_id"].iloc[1])
    at.button(key=f"use-{second}").click().run()
    assert not at.exception
    assert at.number_input(key="search_image_id").value == second
    assert int(results_table(at)["image_id"].iloc[0]) == second


def test_tile_query_shows_its_slide_and_can_exclude_it(index_env: SampleIndex) -> None:
    tile = index_env.image_ids["tile:512,512"]
    at = AppTest.from_file(str(VIEWS / "search.py"), default_timeout=120)
    at.session_state["search_image_id"] = tile
    at.run()
    assert not at.exception and not at.error
    assert "slide **cmu_small_region.svs**" in texts(at)
    table = results_table(at)
    assert int(table["image_id"].iloc[0]) == tile
    at.checkbox(key="search_exclude_group").check().run()
    table = results_table(at)
    assert "cmu_small_region.svs" not in set(table["slide"])  # the sample's tiles are grouped by their slide


def test_a_link_with_the_old_exclude_key_still_excludes(index_env: SampleIndex) -> None:
    """A link shared before "Exclude own slide" became "Exclude same group" (``?search_exclude_slide=true``) still
    excludes the query's group. Planted bug: the page reading only the new key (old links ignored) fails this."""
    tile = index_env.image_ids["tile:512,512"]
    at = AppTest.from_file(str(VIEWS / "search.py"), default_timeout=120)
    at.session_state["search_image_id"] = tile
    at.query_params["search_exclude_slide"] = "true"
    at.run()
    assert not at.exception and not at.error
    assert at.checkbox(key="search_exclude_group").value is True
    assert "cmu_small_region.svs" not in set(results_table(at)["slide"])


def test_a_point_chosen_elsewhere_opens_in_search(index_env: SampleIndex) -> None:
    """The Clusters page's "Open in Search" sets ``hq_next_query`` and switches page: Search uses it."""
    chosen = index_env.image_ids["tfdspng_image_11_label_2.png"]
    at = AppTest.from_file(str(VIEWS / "search.py"), default_timeout=120)
    at.session_state["hq_next_query"] = chosen
    at.run()
    assert not at.exception and not at.error
    assert at.number_input(key="search_image_id").value == chosen
    assert int(results_table(at)["image_id"].iloc[0]) == chosen


def test_a_failed_search_shows_one_clear_error(index_env: SampleIndex) -> None:
    """A query id that is not in the database: one error in the user's words, and the slide overview below does not
    fail on its own (planted: ``shown`` assigned only after a successful search gave a second, "unexpected
    UnboundLocalError" message)."""
    at = AppTest.from_file(str(VIEWS / "search.py"), default_timeout=120)
    at.session_state["search_image_id"] = 10**9
    at.run()
    assert not at.exception, at.exception
    errors = [str(e.value) for e in at.error]
    assert errors == ["Could not search: unknown image id 1000000000: no such image in the database"], errors
