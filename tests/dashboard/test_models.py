"""Models page: training curves from the checkpoint's metrics.csv, making a version active by re-embedding (a job),
and comparing two versions on the same labeled pairs with retrieval's evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import APP_TIMEOUT
from tests.dashboard.test_pages_basic import VIEWS, texts
from tests.support.dashboard_index import SampleIndex

pytestmark = pytest.mark.slow

SECOND = "tiny-r18-b"


@pytest.fixture
def two_versions(sample_index: SampleIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the sample index plus a second registered (not active, no vectors) encoder with a training log."""
    from retrieval import catalog
    from retrieval.db import make_engine, session_factory
    from retrieval.settings import get_settings
    from retrieval.store import open_vector_store
    from training.testing import make_untrained_checkpoint

    home = tmp_path / "home"
    shutil.copytree(sample_index.home, home, ignore=shutil.ignore_patterns("projections"))
    settings = get_settings(home=home)
    engine = make_engine(settings.db_url)
    store = open_vector_store(settings)
    try:
        ckpt = make_untrained_checkpoint(home / "checkpoints" / "b.pt", backbone="resnet18", image_size=64, seed=1)
        (home / "checkpoints" / "b.metrics.csv").write_text("epoch,loss,knn_acc\n1,0.9,0.30\n2,0.5,0.45\n3,0.3,0.52\n")
        with session_factory(engine)() as session:
            catalog.register_encoder(ckpt, session=session, store=store, name=SECOND, activate=False)
    finally:
        store.close()
        engine.dispose()
    monkeypatch.setenv("HISTOQUERY_HOME", str(home))
    for name in ("HISTOQUERY_DATABASE_URL", "HISTOQUERY_QDRANT_PATH", "HISTOQUERY_ALLOWED_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    return home


def _versions(at: AppTest) -> dict[str, dict]:
    table = at.dataframe[0].value
    return {row["name"]: dict(row) for _, row in table.iterrows()}


def test_curves_activation_by_reembedding_and_comparison(two_versions: Path, sample_index: SampleIndex) -> None:
    at = AppTest.from_file(str(VIEWS / "models.py"), default_timeout=APP_TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    versions = _versions(at)
    assert versions[SECOND]["active"] == "" and int(versions[SECOND]["stored vectors"]) == 0
    curves = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert [[t["name"] for t in c["data"]] for c in curves] == [["loss", "knn_acc"]]  # only b has a training log
    assert [p["y"] for p in curves[0]["data"]][0] == [0.9, 0.5, 0.3]
    assert "Two versions with stored vectors are needed" in texts(at)

    n = len(sample_index.image_ids)
    reembed = next(b for b in at.button if b.label == f"Re-embed {n} images and make active")
    reembed.click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Job ") and f"{n} embedded, 0 failed" in s.value for s in at.success)
    at.run()
    versions = _versions(at)
    assert versions[SECOND]["active"] == "✔" and int(versions[SECOND]["stored vectors"]) == n
    assert f"Active encoder: **{SECOND}**" in texts(at)

    # both versions have vectors now: compared on the same pairs, with retrieval's numbers
    compare = next(d.value for d in at.dataframe if "metric" in d.value.columns)
    assert list(compare.columns) == ["metric", SECOND, sample_index.version]
    from dashboard.services import open_retrieval, settings_key
    from retrieval.evaluation import pair_metrics, score_dataset
    from retrieval.settings import get_settings

    source = at.selectbox(key="models_source").value
    assert source == "generate from labels: kather-sample"
    acc = compare.set_index("metric").loc["accuracy"]
    for name in (SECOND, sample_index.version):
        with open_retrieval(settings_key(get_settings()), name) as r:
            scored = score_dataset(r, "kather-sample", n_pairs=1000, topk_queries=100)
            assert float(acc[name]) == pytest.approx(pair_metrics(scored, r.threshold().cos)["accuracy"])
    per_class = next(d.value for d in at.dataframe if "class" in d.value.columns)
    assert len(per_class) == 8 and list(per_class.columns) == ["class", SECOND, sample_index.version]
