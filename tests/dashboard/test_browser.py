"""The dashboard in a real browser: ``streamlit run`` + headless Chromium (CDP), every page, an upload.

Screenshots go to ``$HISTOQUERY_TEST_ARTIFACTS/dashboard`` (default: the test's tmp dir).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dashboard_browser import Browser, chromium, chromium_binary, open_upload, streamlit_server
from tests.support.dashboard_index import SampleIndex

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_binary() is None, reason="chromium not installed (apt-get install chromium)"),
]

# url path -> (page title, texts the rendered page must show)
PAGES = {
    "": ("Search", ["Top 10", "#1 · cos 1.000", "Stored image id", "k (results)"]),
    "pair": ("Pair", ["Cosine similarity", "Decision", "labeled pairs"]),
    "clusters": ("Clusters", ["68 of 68 stored vectors", "PC1"]),
    "accuracy": ("Accuracy", ["Accuracy vs threshold", "ROC", "Threshold sweep", "Per-class breakdown"]),
    "ingestion": ("Ingestion", ["Start an ingestion", "Server-side ingestion is disabled", "No ingestion jobs yet"]),
    "models": ("Models", ["Active encoder: tiny-r18", "Training config"]),
}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("HISTOQUERY_TEST_ARTIFACTS")
    out = Path(base) / "dashboard" if base else tmp_path_factory.mktemp("dashboard-screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def release_in_process_store(index: SampleIndex) -> None:
    """Close the store that AppTest pages cached in this process: qdrant-edge allows one process per store."""
    from dashboard.services import reset_store

    with pytest.MonkeyPatch.context() as mp:
        for key, value in index.env().items():
            mp.setenv(key, value)
        mp.delenv("HISTOQUERY_DATABASE_URL", raising=False)
        mp.delenv("HISTOQUERY_QDRANT_PATH", raising=False)
        reset_store()


@pytest.fixture(scope="module")
def app(sample_index: SampleIndex, artifacts: Path) -> Iterator[tuple[str, Browser]]:
    env = {**sample_index.env(), "HISTOQUERY_ALLOWED_ROOTS": "[]"}
    release_in_process_store(sample_index)
    with streamlit_server(env=env, log_path=artifacts / "streamlit.log") as url, chromium() as browser:
        yield url, browser


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders_without_errors(app: tuple[str, Browser], artifacts: Path, path: str) -> None:
    url, browser = app
    title, expected = PAGES[path]
    page = browser.new_page()
    page.navigate(f"{url}/{path}")
    text = page.wait_rendered(title, *expected, timeout=180)
    if title in ("Search", "Accuracy"):  # thumbnails are sent after the text: wait for them (a full suite is slow)
        page.wait_for("document.querySelectorAll(\"[data-testid='stMain'] img\").length >= 11", timeout=60)
    page.wait_media(timeout=60)
    page.screenshot(artifacts / f"{title.lower()}.png")
    assert "Traceback" not in text
    assert page.error_texts() == []
    assert page.broken_images() == []
    assert page.charts_drawn()
    if title in ("Search", "Accuracy"):
        assert page.count("[data-testid='stMain'] img") >= 11  # query + 10 result thumbnails
    if title in ("Clusters", "Accuracy", "Pair"):
        assert page.count("[data-testid='stPlotlyChart'] .main-svg") >= 1


def test_search_by_upload_finds_the_uploaded_image_first(
    app: tuple[str, Browser], artifacts: Path, sample_dir: Path
) -> None:
    url, browser = app
    page = browser.new_page()
    page.navigate(url)
    page.wait_rendered("Search", "Top 10", timeout=180)
    page.click_text("[data-testid='stMain'] [data-testid='stRadioOption']", "Upload")
    page.wait_for("document.querySelector(\"[data-testid='stMain'] input[type=file]\")", timeout=60)
    upload = sample_dir / "02_STROMA" / "tfdspng_image_32_label_1.png"
    page.set_file_input([upload])
    text = page.wait_for_text("Upload: tfdspng_image_32_label_1.png", "Top 10", timeout=180)
    page.wait_media(timeout=60)
    page.screenshot(artifacts / "search-upload.png")
    assert page.error_texts() == []
    first = text.split("#1 · cos ", 1)[1][:5]
    assert float(first) == pytest.approx(1.0, abs=2e-3)  # the stored copy of the uploaded image ranks first
    assert "02_STROMA" in text.split("#1 · cos ", 1)[1][:200]


def test_upload_of_a_non_image_shows_a_message_not_a_traceback(
    app: tuple[str, Browser], artifacts: Path, tmp_path: Path
) -> None:
    url, browser = app
    page = browser.new_page()
    open_upload(page, f"{url}/pair", "Pair", "Decision")
    fake = tmp_path / "not-an-image.png"
    fake.write_bytes(b"this is not a PNG file")
    page.set_file_input([fake])
    page.wait_for_text("not a readable image", timeout=120)
    page.screenshot(artifacts / "pair-bad-upload.png")
    errors = page.error_texts()
    assert len(errors) == 1 and "not-an-image.png: not a readable image" in errors[0]
    assert "Traceback" not in page.body_text()


def test_clicking_a_cluster_point_opens_it_in_search(app: tuple[str, Browser], artifacts: Path) -> None:
    url, browser = app
    page = browser.new_page()
    page.navigate(f"{url}/clusters")
    page.wait_rendered("Clusters", "stored vectors", timeout=180)
    custom = page.click_plot_point(0, 0)
    image_id = int(custom[0])
    page.wait_rendered("Clusters", "1 selected", "Open in Search", timeout=120)
    page.wait_media(timeout=60)
    page.screenshot(artifacts / "clusters-selected.png")
    assert f"#{image_id} · " in page.body_text()
    page.click_text("button", "Open in Search")
    text = page.wait_rendered("Search", "Top 10", timeout=120)
    assert f"#{image_id} · " in text  # the query caption
    assert text.split("#1 · cos ", 1)[1].startswith("1.000")
    assert page.error_texts() == []
