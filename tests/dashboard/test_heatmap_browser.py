"""The Where else heat maps in a real browser (``streamlit run`` + headless Chromium): the overview PNGs load, the
slide's Plotly heat map draws its cells, and clicking a cell shows that tile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.test_browser import artifacts, release_in_process_store  # noqa: F401 - fixture
from tests.support.dashboard_browser import Browser, chromium, chromium_binary, streamlit_server
from tests.support.dashboard_index import SampleIndex

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_binary() is None, reason="chromium not installed (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def heat_app(sample_index: SampleIndex, artifacts: Path) -> Iterator[tuple[str, Browser]]:  # noqa: F811
    env = {**sample_index.env(), "HISTOQUERY_ALLOWED_ROOTS": "[]"}
    release_in_process_store(sample_index)
    with streamlit_server(env=env, log_path=artifacts / "streamlit-heatmap.log") as url, chromium() as browser:
        yield url, browser


def test_the_slide_heat_map_renders_and_a_cell_opens_its_tile(
    heat_app: tuple[str, Browser],
    artifacts: Path,  # noqa: F811
    sample_index: SampleIndex,
) -> None:
    url, browser = heat_app
    page = browser.new_page()
    page.navigate(f"{url}/where-else")
    text = page.wait_rendered("Where else", "4 stored tiles on 1 slides", "best cos", "cmu_small_region", timeout=180)
    page.wait_media(timeout=60)
    page.screenshot(artifacts / "where-else.png")
    assert "Traceback" not in text
    assert page.error_texts() == []
    assert page.broken_images() == []
    # the overview heat map (a PNG) and the tile thumbnail have pixels
    assert page.count("[data-testid='stMain'] img") >= 2
    assert page.evaluate(
        "Array.from(document.querySelectorAll(\"[data-testid='stMain'] img\")).every(i => i.naturalWidth > 0)"
    )
    # the slide's Plotly heat map drew its cells (one heatmap layer image) and its colour bar
    assert page.charts_drawn()
    assert page.count("[data-testid='stPlotlyChart'] .heatmaplayer image") == 1
    assert page.count("[data-testid='stPlotlyChart'] .colorbar") == 1
    tiles = {v for k, v in sample_index.image_ids.items() if k.startswith("tile:")}
    custom = page.click_plot_point(1, 2)  # trace 1: the tiles' click targets over the cells
    tile = int(custom[0])
    assert tile in tiles
    page.wait_for_text(f"tile #{tile}", f"#{tile} · cmu_small_region", timeout=120)
    page.wait_media(timeout=60)
    page.screenshot(artifacts / "where-else-clicked.png")
    assert page.error_texts() == []
