"""AppTest of the Accuracy page: its numbers are retrieval.evaluation's on the same pairs."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.services import open_retrieval, settings_key
from retrieval.evaluation import pair_metrics, score_dataset
from retrieval.settings import get_settings
from tests.dashboard.test_pages_basic import VIEWS
from tests.support.dashboard_index import SampleIndex


def test_accuracy_page_reports_retrievals_metrics(index_env: SampleIndex) -> None:
    at = AppTest.from_file(str(VIEWS / "accuracy.py"), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="accuracy_source").value == "generate from labels: kather-sample"
    summary = next(d.value for d in at.dataframe if "encoder version" in d.value.columns)
    assert list(summary["encoder version"]) == [index_env.version]
    assert summary["threshold from"].iloc[0] == "study-default"  # the tiny index is not calibrated
    with open_retrieval(settings_key(get_settings())) as r:
        expected = pair_metrics(score_dataset(r, "kather-sample", n_pairs=1000, topk_queries=100), r.threshold().cos)
    assert float(summary["accuracy"].iloc[0]) == pytest.approx(expected["accuracy"])
    assert float(summary["ROC AUC"].iloc[0]) == pytest.approx(expected["roc_auc"])
    assert int(summary["pairs"].iloc[0]) == expected["n_pairs"]
    sweep = next(d.value for d in at.dataframe if "threshold_d" in d.value.columns)
    assert len(sweep) == 15 and sweep["threshold_d"].iloc[0] == pytest.approx(0.1)
    per_class = next(d.value for d in at.dataframe if "class" in d.value.columns)
    assert set(per_class["class"]) == {label for label in index_env.labels.values() if label}  # the 8 classes
    assert len(at.get("plotly_chart")) == 2  # accuracy-vs-threshold and ROC
