"""The Ingestion page really ingests a folder under an allowed root (embedded mode, in the dashboard process)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.test_pages_basic import VIEWS

pytestmark = pytest.mark.slow


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty index with a registered, active tiny encoder."""
    from retrieval import catalog
    from retrieval.db import make_engine, migrate, session_factory
    from retrieval.settings import get_settings
    from retrieval.store import open_vector_store
    from training.testing import make_untrained_checkpoint

    home = tmp_path / "home"
    settings = get_settings(home=home)
    migrate(settings.db_url)
    engine = make_engine(settings.db_url)
    store = open_vector_store(settings)
    try:
        ckpt = make_untrained_checkpoint(home / "tiny.pt", backbone="resnet18", image_size=64)
        with session_factory(engine)() as session:
            catalog.register_encoder(ckpt, session=session, store=store, name="tiny", activate=True)
    finally:
        store.close()
        engine.dispose()
    monkeypatch.setenv("HISTOQUERY_HOME", str(home))
    monkeypatch.delenv("HISTOQUERY_BROKER_URL", raising=False)
    return home


def test_ingestion_page_ingests_a_folder_and_lists_the_job(
    fresh_home: Path, tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "allowed"
    for label in ("01_TUMOR", "07_ADIPOSE"):
        shutil.copytree(sample_dir / label, root / "cohort" / label)
    (root / "cohort" / "07_ADIPOSE" / "broken.png").write_bytes(b"not an image")
    monkeypatch.setenv("HISTOQUERY_ALLOWED_ROOTS", f'["{root}"]')
    at = AppTest.from_file(str(VIEWS / "ingestion.py"), default_timeout=300)
    at.run()
    assert "No ingestion jobs yet." in [i.value for i in at.info]
    at.text_input[0].set_value(str(root / "cohort"))
    at.text_input[1].set_value("cohort")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert [s.value for s in at.success] == [
        f"Job 1 done: 16 stored, 0 already stored, 1 failed, of 17 (`{(root / 'cohort').resolve()}`)."
    ]  # one message, after the job: no "Started job" under a finished bar
    jobs = next(d.value for d in at.dataframe if "job" in d.value.columns)
    assert len(jobs) == 1
    job = jobs.iloc[0]
    assert job["status"] == "done" and int(job["done"]) == 16 and int(job["failed"]) == 1
    failures = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(failures["file"].map(lambda p: Path(p).name)) == ["broken.png"]
    # the new vectors are searchable at once through the same (shared) store
    search = AppTest.from_file(str(VIEWS / "search.py"), default_timeout=300)
    search.run()
    assert not search.exception and not search.error
    assert "16 stored vectors" in "\n".join(c.value for c in search.caption)


def test_a_single_slide_takes_the_slide_options_and_gets_no_folder_label(
    fresh_home: Path, tmp_path: Path, sample_slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import select

    from retrieval.db import make_engine, session_factory
    from retrieval.models import Image
    from retrieval.settings import get_settings

    root = tmp_path / "allowed"
    root.mkdir()
    slide = root / sample_slide.name
    shutil.copy(sample_slide, slide)
    monkeypatch.setenv("HISTOQUERY_ALLOWED_ROOTS", f'["{root}"]')
    at = AppTest.from_file(str(VIEWS / "ingestion.py"), default_timeout=300)
    at.run()
    assert [c.label for c in at.checkbox] == ["Use sub-folder names as labels"]  # folder mode: offered
    at.radio(key="ingest_kind").set_value("Single slide or image file").run()
    assert not at.checkbox  # a single file has no sub-folders to name labels after
    at.text_input[0].set_value(str(slide))
    at.text_input[1].set_value("one-slide")
    at.number_input(key="ingest_tile_size").set_value(512)
    at.number_input(key="ingest_overlap").set_value(64)
    at.slider(key="ingest_min_tissue").set_value(0.3)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    engine = make_engine(get_settings().db_url)
    try:
        with session_factory(engine)() as session:
            tiles = session.scalars(select(Image).where(Image.slide_id.is_not(None))).all()
    finally:
        engine.dispose()
    assert tiles and {t.label for t in tiles} == {None}
    assert {t.tile_size for t in tiles} == {512}
    xs = sorted({int(t.x or 0) for t in tiles})
    assert min(b - a for a, b in zip(xs, xs[1:], strict=False)) == 512 - 64  # the overlap moved the tile origins
    jobs = next(d.value for d in at.dataframe if "job" in d.value.columns)
    assert jobs["inputs"].iloc[0] == str(slide.resolve())  # readable, not a dict
    assert "slide tiles 512 px at native resolution, overlap 64 px, tissue ≥ 0.3" in jobs["options"].iloc[0]
    assert "{" not in jobs["inputs"].iloc[0] + jobs["options"].iloc[0]
