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
    assert any(s.value.startswith("Started job ") for s in at.success)
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
