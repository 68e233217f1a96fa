"""AppTest of the pages that need no encoder: Models, Ingestion (allowed roots), Clusters, empty states."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import APP_TIMEOUT
from tests.support.dashboard_index import SampleIndex

VIEWS = Path(__file__).resolve().parents[2] / "dashboard" / "views"


def run_page(name: str) -> AppTest:
    at = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=APP_TIMEOUT)
    at.run()
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption] + [e.value for e in at.info]
    parts += [e.value for e in at.success] + [e.value for e in at.warning] + [e.value for e in at.title]
    return "\n".join(str(p) for p in parts)


def test_models_page_lists_the_active_encoder(index_env: SampleIndex) -> None:
    at = run_page("models")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["name"]) == [index_env.version]
    assert list(table["active"]) == ["✔"]
    assert int(table["stored vectors"].iloc[0]) == len(index_env.image_ids)
    assert f"Active encoder: **{index_env.version}**" in texts(at)


@pytest.mark.parametrize("page", ["search", "pair", "clusters", "accuracy", "models"])
def test_empty_index_shows_a_helpful_empty_state(empty_env: Path, page: str) -> None:
    at = run_page(page)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "No encoder version is registered yet" in texts(at)


def test_ingestion_refuses_a_path_outside_the_allowed_roots(
    index_env: SampleIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "allowed"
    (root / "inside").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "link-out").symlink_to(outside)
    monkeypatch.setenv("HISTOQUERY_ALLOWED_ROOTS", f'["{root}"]')
    at = run_page("ingestion")
    assert not at.exception
    assert str(root) in texts(at)
    for attempt in (str(outside), f"{root}/../secret", str(root / "link-out")):
        at.text_input[0].set_value(attempt)
        at.button[0].click().run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and "outside the allowed roots" in errors[0], errors
        assert "Started job" not in texts(at)


def test_ingestion_without_allowed_roots_is_disabled(index_env: SampleIndex) -> None:
    at = run_page("ingestion")
    assert not at.exception
    assert "Server-side ingestion is disabled" in texts(at)
    at.text_input[0].set_value("/etc")
    at.button[0].click().run()
    assert [e.value for e in at.error] and "no allowed roots" in at.error[0].value


def test_clusters_page_maps_every_stored_vector_once_and_caches_it(index_env: SampleIndex) -> None:
    at = run_page("clusters")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    n = len(index_env.image_ids)
    assert f"{n} of {n} stored vectors" in texts(at)
    cache = list((index_env.home / "projections").glob("*-pca-*.npz"))
    assert len(cache) == 1
    st.cache_data.clear()  # as after a server restart: the projection comes from the disk cache
    at2 = run_page("clusters")
    assert "cached projection" in texts(at2)
