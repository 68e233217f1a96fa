"""Search cards: byte-identical copies collapse into one card, 'same' marks follow the calibrated threshold, tile
cards show coordinates, slide overviews mark the results, and a query without tissue is warned about."""

from __future__ import annotations

from PIL import Image as PILImage
from streamlit.testing.v1 import AppTest

from dashboard.services import open_retrieval, settings_key
from ingest.query_checks import check_query
from retrieval.settings import get_settings
from tests.dashboard.test_pages_basic import VIEWS, texts
from tests.dashboard.test_search import results_table
from tests.support.dashboard_calibrated import COPIES_DATASET
from tests.support.dashboard_index import SampleIndex


def search(image_id: int, **state: object) -> AppTest:
    at = AppTest.from_file(str(VIEWS / "search.py"), default_timeout=120)
    at.session_state["search_image_id"] = image_id
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def card_htmls(at: AppTest) -> list[str]:
    return [h.proto.body for h in at.get("html") if "hq-card" in h.proto.body]


def test_byte_identical_copies_are_one_card_that_names_their_datasets(copies_env: SampleIndex) -> None:
    """Planted bug: ``search_cards.cards`` not grouping (every hit its own card) fails this test."""
    query = copies_env.image_ids["tfdspng_image_0_label_0.png"]
    copy = copies_env.image_ids["copy:tfdspng_image_0_label_0.png"]
    at = search(query)
    table = results_table(at)
    cards = table[table["copy of"].isna()]
    assert len(cards) == 10 and len(card_htmls(at)) == 10  # k distinct images, not k hits
    assert int(cards["image_id"].iloc[0]) == query
    assert copy not in set(cards["image_id"])
    assert int(table.loc[table["image_id"] == copy, "copy of"].iloc[0]) == query
    assert f"byte-identical copy also in: {COPIES_DATASET} (#{copy})" in card_htmls(at)[0]
    assert sum(abs(float(c) - 1.0) < 1e-3 for c in cards["cos"]) == 1  # one cos-1.000 card, not two
    assert "byte-identical copies collapsed" in texts(at) or "byte-identical copy collapsed" in texts(at)

    at.checkbox(key="search_show_copies").check().run()
    table = results_table(at)
    assert table["copy of"].isna().all()
    assert {query, copy} <= set(table["image_id"].iloc[:2])  # both copies, each its own card


def test_cards_mark_same_at_the_calibrated_threshold(copies_env: SampleIndex) -> None:
    """Planted bug: marking with the study's default (or the uncalibrated) threshold fails this test."""
    with open_retrieval(settings_key(get_settings())) as r:
        thr = r.threshold()
    assert thr.source == "calibrated"
    query = min(i for name, i in copies_env.image_ids.items() if not name.startswith("copy:"))
    at = search(query, search_k=30)
    cards = card_htmls(at)
    table = results_table(at)
    shown = table[table["copy of"].isna()]
    expected_same = int((shown["cos"] >= round(thr.cos, 4) - 1e-4).sum())
    assert 0 < expected_same < len(shown), "the fixture should give both kinds of result"
    assert sum("✓ same" in c for c in cards) == expected_same
    assert f"cos {thr.cos:.3f}" in texts(at) and "calibrated on labeled pairs" in texts(at)
    assert f"{expected_same} of {len(shown)}" in texts(at)


def test_tile_cards_show_coordinates_and_results_are_marked_on_the_slide(index_env: SampleIndex) -> None:
    """Planted bug: marking only the query tile on the overview fails this test (the caption lists no results)."""
    tile = index_env.image_ids["tile:1024,1024"]
    at = search(tile)
    table = results_table(at)
    on_slide = [int(r) for r, s in zip(table["rank"], table["slide"], strict=True) if s == "cmu_small_region.svs"]
    assert on_slide[0] == 1 and len(on_slide) >= 2, "the query's slide should have another tile in the results"
    assert "tile (1024, 1024) · 256 px · level 0" in card_htmls(at)[0]
    captions = [img.caption for el in at.get("image") for img in el.proto.imgs]
    overview = [c for c in captions if c.startswith("cmu_small_region.svs:")]
    assert overview == [
        "cmu_small_region.svs: query tile in green, results " + ", ".join(f"#{r}" for r in on_slide[1:]) + " in orange"
    ]


def test_a_query_without_tissue_is_warned_about(index_env: SampleIndex) -> None:
    """Planted bug: not showing the query checks fails this test."""
    glass = search(index_env.image_ids["tile:512,512"])  # blank glass on the shipped slide
    assert any("one flat colour" in w.value for w in glass.warning)
    tissue = search(index_env.image_ids["tfdspng_image_0_label_0.png"])
    assert not [w.value for w in tissue.warning]


def test_query_checks_use_the_tilers_tissue_floor_and_the_encoder_input(index_env: SampleIndex) -> None:
    """An 8x8 pink square is far smaller than the input; a tile that is all tissue is not called "little tissue".

    Planted bugs: Otsu's threshold per query image (it splits an all-tissue tile in two: 29%), or flatness measured
    over all channels together (a solid pink square then has a spread of 33), fail this test.
    """
    from ingest.slides import read_tile
    from tests.conftest import SAMPLES

    pink = check_query(PILImage.new("RGB", (8, 8), (230, 150, 200)), 224)
    assert any("8×8 px, far smaller than the encoder's 224×224" in w for w in pink.warnings)
    big_pink = check_query(PILImage.new("RGB", (3000, 2000), (230, 150, 200)), 224)  # saturated: "tissue" by colour
    assert big_pink.flat and any("one flat colour" in w for w in big_pink.warnings), big_pink
    slide = next((SAMPLES / "slides").glob("*.svs"))
    full = check_query(read_tile(slide, 0, 1024, 1024, 256), 224)
    assert full.tissue > 0.9 and full.warnings == ()
    empty = check_query(PILImage.open(next((SAMPLES / "kather2016" / "08_EMPTY").iterdir())), 64)
    assert any("Little or no tissue" in w for w in empty.warnings)
