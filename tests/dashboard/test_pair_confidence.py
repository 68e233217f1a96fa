"""Pair page: an honest confidence next to the decision (calibration pairs scoring like this pair), and labels
that are readable (above the plot, not over the bars)."""

from __future__ import annotations

import json

import numpy as np

from dashboard.pair_confidence import CONFIDENCE_LABEL
from dashboard.services import open_retrieval, settings_key
from retrieval.settings import get_settings
from tests.dashboard.test_pair import pair_page
from tests.support.dashboard_calibrated import CALIBRATION_SET
from tests.support.dashboard_index import SampleIndex


def test_confidence_is_the_share_of_same_pairs_among_the_nearest_calibration_pairs(copies_env: SampleIndex) -> None:
    """Computed here from retrieval's scores of the stored calibration pairs, independently of the page.

    Planted bug: the share over *all* calibration pairs (not the ones scoring like this pair) fails this test.
    """
    from retrieval.pair_sets import pair_set_rows

    a = copies_env.image_ids["tfdspng_image_0_label_0.png"]
    b = copies_env.image_ids["tfdspng_image_32_label_1.png"]
    at = pair_page(a, b)
    metrics = {m.label: m.value for m in at.metric}
    with open_retrieval(settings_key(get_settings())) as r:
        cos = r.pair(a, b).cos
        rows = pair_set_rows(CALIBRATION_SET, retrieval=r)
        scores = np.array([res.cos for res in r.pair_batch([(x, y) for x, y, _ in rows])])
    labels = np.array([same for _, _, same in rows])
    nearest = np.argsort(np.abs(scores - cos), kind="stable")[:40]
    share = labels[nearest].mean()
    assert abs(share - labels.mean()) > 0.02, "the fixture should make local and global shares differ"
    assert metrics[CONFIDENCE_LABEL] == f"{share:.0%}"
    caption = next(c.value for c in at.caption if "calibration pairs scoring closest" in c.value)
    assert "Of the 40 calibration pairs" in caption and f"{labels[nearest].sum()} are same-category" in caption
    assert f"{len(rows)} calibration pairs in all ({CALIBRATION_SET})" in caption


def test_without_calibration_pairs_it_says_so(index_env: SampleIndex) -> None:
    """Planted bug: falling back to some other labeled pairs without saying so fails this test."""
    at = pair_page(
        index_env.image_ids["tfdspng_image_0_label_0.png"], index_env.image_ids["tfdspng_image_32_label_1.png"]
    )
    metrics = {m.label: m.value for m in at.metric}
    assert metrics[CONFIDENCE_LABEL] == "none"
    assert any(c.value.startswith("No labeled pairs:") for c in at.caption)


def test_threshold_and_pair_labels_sit_above_the_bars_on_a_white_box(index_env: SampleIndex) -> None:
    """Planted bug: the labels drawn inside the plot (over the dark bars, as before) fail this test."""
    at = pair_page(
        index_env.image_ids["tfdspng_image_0_label_0.png"], index_env.image_ids["tfdspng_image_32_label_1.png"]
    )
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    notes = spec["layout"]["annotations"]
    assert sorted(n["text"].split()[0] for n in notes) == ["this", "threshold"]
    for note in notes:
        assert note["yref"] == "paper" and note["y"] >= 1.0 and note["yanchor"] == "bottom"  # above the plot area
        assert note["bgcolor"].startswith("rgba(255,255,255")
