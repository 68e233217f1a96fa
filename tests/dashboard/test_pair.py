"""AppTest of the Pair page: its decision is retrieval's pair decision."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.services import open_retrieval, settings_key
from retrieval.settings import get_settings
from tests.dashboard.test_pages_basic import VIEWS
from tests.support.dashboard_index import SampleIndex


def pair_page(a: int, b: int) -> AppTest:
    """The Pair page run on two stored images; fails on any exception or error box."""
    at = AppTest.from_file(str(VIEWS / "pair.py"), default_timeout=120)
    at.session_state["pair_A_id"] = a
    at.session_state["pair_B_id"] = b
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.mark.parametrize(
    ("a_name", "b_name"),
    [
        ("tfdspng_image_0_label_0.png", "tfdspng_image_0_label_0.png"),  # identical: cos 1, same
        ("tfdspng_image_0_label_0.png", "tfdspng_image_32_label_1.png"),  # tumour vs stroma
    ],
)
def test_pair_decision_matches_retrieval_pair(index_env: SampleIndex, a_name: str, b_name: str) -> None:
    a, b = index_env.image_ids[a_name], index_env.image_ids[b_name]
    at = pair_page(a, b)
    metrics = {m.label: m.value for m in at.metric}
    # the embedded store allows one opener per process: use the dashboard's, through retrieval's own API
    with open_retrieval(settings_key(get_settings())) as r:
        expected = r.pair(a, b)
    assert float(metrics["Cosine similarity"]) == pytest.approx(expected.cos, abs=1e-4)
    assert float(metrics["Distance d = 2 − 2·cos"]) == pytest.approx(expected.d, abs=1e-4)
    assert metrics["Decision"] == ("same category" if expected.same else "different")
    if a == b:
        assert float(metrics["Cosine similarity"]) == pytest.approx(1.0, abs=1e-4)
    # the labeled-pair distribution (generated from the sample's labels) is drawn
    assert at.selectbox(key="pair_distribution_source").value.startswith("generate from labels: ")
    assert any("labeled pairs" in c.value for c in at.caption)
