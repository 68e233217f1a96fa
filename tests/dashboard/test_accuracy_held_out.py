"""The Accuracy page opens on the held-out side, marks in-sample pairs, and ranks galleries within the dataset."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.test_pages_basic import VIEWS
from tests.support.dashboard_index import SampleIndex


def _images(at: AppTest) -> list[tuple[str, str]]:
    """(caption, media URL) of every image shown, in page order (the URL is a hash of the image bytes)."""
    return [(img.caption, img.url) for el in at.get("image") for img in el.proto.imgs]


def test_accuracy_page_opens_on_the_held_out_pairs(copies_env: SampleIndex) -> None:
    at = AppTest.from_file(str(VIEWS / "accuracy.py"), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="accuracy_source").value == "pair set: ks-held-out"
    assert not [w.value for w in at.warning if "In-sample" in w.value]
    summary = next(d.value for d in at.dataframe if "encoder version" in d.value.columns)
    assert summary["threshold from"].iloc[0] == "calibrated"
    # galleries rank within the query's dataset: the byte-identical copy (cos 1.000) never shows up
    assert any("ranked within dataset kather-sample" in m.value for m in at.markdown)
    shown = _images(at)
    rows = [i for i, (caption, _) in enumerate(shown) if caption.startswith("query #")]
    assert len(rows) == 3 and len(shown) == 3 * 11
    for start in rows:  # a copy has the query's bytes, so the query's thumbnail (same media URL)
        query_url = shown[start][1]
        assert all(url != query_url for _, url in shown[start + 1 : start + 11])

    at.selectbox(key="accuracy_source").set_value("pair set: ks-calibration").run()
    assert not at.exception, at.exception
    assert any("In-sample" in w.value for w in at.warning)


def test_a_stored_pair_set_reports_precision_at_10_and_its_own_pair_count(copies_env: SampleIndex) -> None:
    from dashboard.services import open_retrieval, settings_key
    from retrieval.pair_sets import pair_set_rows, score_pair_set
    from retrieval.settings import get_settings

    at = AppTest.from_file(str(VIEWS / "accuracy.py"), default_timeout=180)
    at.run()
    assert at.selectbox(key="accuracy_source").value == "pair set: ks-held-out"
    with open_retrieval(settings_key(get_settings())) as r:
        expected = score_pair_set(r, "ks-held-out", topk_queries=100).topk["precision_at_10"]
        n_stored = len(pair_set_rows("ks-held-out", retrieval=r))
    summary = next(d.value for d in at.dataframe if "encoder version" in d.value.columns)
    assert float(summary["precision@10"].iloc[0]) == pytest.approx(expected)
    assert any("precision@10: neighbours of the pair set's labeled images" in c.value for c in at.caption)
    # a stored set is scored whole: its size is shown, no "pairs to generate" box that would be ignored
    assert not [n for n in at.number_input if n.key == "accuracy_n_pairs"]
    assert [m.value for m in at.metric] == [f"{n_stored:,}"]
    assert int(summary["pairs"].iloc[0]) == n_stored


def test_generating_more_pairs_than_the_labels_allow_says_why(copies_env: SampleIndex) -> None:
    at = AppTest.from_file(str(VIEWS / "accuracy.py"), default_timeout=180)
    at.run()
    at.selectbox(key="accuracy_source").set_value("generate from labels: kather-sample").run()
    at.number_input(key="accuracy_n_pairs").set_value(1000).run()
    assert not at.exception, at.exception
    summary = next(d.value for d in at.dataframe if "encoder version" in d.value.columns)
    drawn = int(summary["pairs"].iloc[0])
    assert drawn < 1000
    infos = [i.value for i in at.info]
    assert any(f"{drawn:,} pairs, not the 1,000 asked for" in i and "distinct balanced pairs" in i for i in infos)


def test_gallery_results_name_their_id_and_label_and_open_in_search(copies_env: SampleIndex) -> None:
    at = AppTest.from_file(str(VIEWS / "accuracy.py"), default_timeout=180)
    at.run()
    captions = [c for c, _ in _images(at) if not c.startswith("query #")]
    assert len(captions) == 30
    for caption in captions:  # "✓ 0.912 · #17 · 02_STROMA"
        head, image_id, label = caption.split(" · ")
        assert head.split(" ")[0] in ("✓", "✗")
        assert copies_env.labels[int(image_id.removeprefix("#"))] == label
    opens = [b for b in at.button if str(b.key).startswith("acc-open-")]
    assert len(opens) == 30


def test_gallery_never_shows_the_querys_own_group(copies_env: SampleIndex) -> None:
    """The fixture stores each image's group (patient) with its point, as ingestion does; a gallery result from the
    query's own patient would flatter the encoder. Planted bug: the page passing ``exclude_same_group=False`` (or the
    store ignoring the group payload) fails this test: with 4 images per patient, some neighbours share it."""
    from sqlalchemy import select

    from retrieval.db import engine_for, session_factory
    from retrieval.models import Image
    from retrieval.settings import get_settings

    at = AppTest.from_file(str(VIEWS / "accuracy.py"), default_timeout=180)
    at.run()
    with session_factory(engine_for(get_settings(home=copies_env.home).db_url))() as session:
        group = dict(session.execute(select(Image.id, Image.group)).tuples().all())
    assert len(set(group.values())) == 16
    query, checked = None, 0
    for caption, _ in _images(at):
        if caption.startswith("query #"):  # "query #17 · 02_STROMA"
            query = int(caption.split(" ")[1].removeprefix("#"))
            continue
        result = int(caption.split(" · ")[1].removeprefix("#"))
        assert query is not None and group[result] != group[query], (query, result, group[query])
        checked += 1
    assert checked == 30
