"""Clusters page: colours derived from the value (grey for no label), a clean hover, a paged selection kept in the
session, and UMAP computed in the background while PCA is shown."""

from __future__ import annotations

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.colours import MISSING, PALETTE, colour_map
from tests.dashboard.conftest import APP_TIMEOUT
from tests.dashboard.test_pages_basic import VIEWS, texts
from tests.support.dashboard_index import SampleIndex

KATHER = ["01_TUMOR", "02_STROMA", "03_COMPLEX", "04_LYMPHO", "05_DEBRIS", "06_MUCOSA", "07_ADIPOSE", "08_EMPTY"]


def test_colours_come_from_the_value_not_its_position() -> None:
    full = colour_map([*KATHER, "(no label)"])
    assert full["(no label)"] == MISSING and MISSING not in PALETTE
    assert len({full[k] for k in KATHER}) == len(KATHER)  # distinct
    assert colour_map(list(reversed(KATHER))) == {k: full[k] for k in KATHER}  # order of appearance does not matter
    # a view showing only some labels colours them as the full legend does (the page passes every stored label)
    assert colour_map(KATHER)["07_ADIPOSE"] == colour_map([*KATHER, "07_ADIPOSE"])["07_ADIPOSE"]
    many = colour_map([f"class-{i:02d}" for i in range(len(PALETTE))])
    assert len(set(many.values())) == len(PALETTE)  # more than 10 labels, no two alike


def _figure(at: AppTest) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def test_map_colours_unlabeled_points_grey_and_hovers_cleanly(index_env: SampleIndex) -> None:
    at = AppTest.from_file(str(VIEWS / "clusters.py"), default_timeout=APP_TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    traces = {t["name"]: t for t in _figure(at)["data"]}
    expected = colour_map([*KATHER, "(no label)"])
    assert {name: t["marker"]["color"] for name, t in traces.items()} == expected
    template = traces["01_TUMOR"]["hovertemplate"]
    assert "=" not in template and "#%{customdata[0]}" in template and "dataset %{customdata[2]}" in template


def test_a_large_selection_is_paged_and_kept_in_the_session(index_env: SampleIndex) -> None:
    at = AppTest.from_file(str(VIEWS / "clusters.py"), default_timeout=APP_TIMEOUT)
    at.session_state["clusters_selected"] = sorted(index_env.image_ids.values())[:12]
    at.run()
    assert not at.exception, at.exception
    assert "**12 selected**" in texts(at)
    assert "Showing 1-10 of 12." in texts(at)
    assert len([b for b in at.button if str(b.key).startswith("open-")]) == 10
    at.number_input(key="clusters_selection_page").set_value(2).run()
    assert "Showing 11-12 of 12." in texts(at)
    assert len([b for b in at.button if str(b.key).startswith("open-")]) == 2
    at.button[0].click().run()  # Clear selection
    assert "selected**" not in texts(at)


@pytest.mark.slow
def test_umap_is_computed_in_the_background_while_pca_is_shown(index_env: SampleIndex) -> None:
    for old in (index_env.home / "projections").glob("*-umap-*.npz"):
        old.unlink()
    at = AppTest.from_file(str(VIEWS / "clusters.py"), default_timeout=APP_TIMEOUT)
    at.run()
    start = time.perf_counter()
    at.radio(key="clusters_method").set_value("UMAP").run()
    assert time.perf_counter() - start < 20  # the page does not wait for UMAP (its first run compiles for ~30 s)
    assert not at.exception, at.exception
    assert "UMAP is being computed in the background" in texts(at)
    assert "PC1" in texts(at)  # PCA meanwhile
    deadline = time.time() + 300
    while not list((index_env.home / "projections").glob("*-umap-*.npz")) and time.time() < deadline:
        time.sleep(2)
    at.run()
    assert not at.exception, at.exception
    assert "PC1" not in texts(at) and "UMAP is being computed" not in texts(at)
    assert _figure(at)["layout"]["xaxis"]["title"]["text"] == "UMAP 1"
