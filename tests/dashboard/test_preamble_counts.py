"""The page preamble (``dashboard.common.active_version_or_stop`` + ``version_caption``) caches the O(N) count of
stored vectors, and still shows the right version and count on the next rerun after the index changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import APP_TIMEOUT


def _preamble_page() -> None:
    from dashboard.common import active_version_or_stop, open_services, version_caption

    version_caption(active_version_or_stop(open_services()))


def _shown(at: AppTest) -> str:
    assert not at.exception, at.exception
    return "\n".join(str(e.value) for e in [*at.caption, *at.info])


def _store(rows: list, svc: object, version_name: str) -> None:
    """Embed ``rows`` under ``version_name`` through the page's own services (one process may open the store)."""
    from retrieval.catalog import active_encoder_version, store_embeddings
    from tests.support.retrieval_factory import clustered_vectors

    with svc.session() as session:  # type: ignore[attr-defined]
        version = active_encoder_version(session=session, name=version_name)
        rows = [session.merge(r) for r in rows]
        vectors = clustered_vectors([r.label for r in rows], dim=16, seed=len(rows))
        store_embeddings(rows, vectors, version, session=session, store=svc.store)  # type: ignore[attr-defined]


def test_preamble_shows_the_new_version_and_its_count_after_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dashboard.services import services
    from retrieval.catalog import activate_encoder, active_encoder_version
    from tests.support.retrieval_factory import add_images, fake_version

    home = tmp_path / "home"
    monkeypatch.setenv("HISTOQUERY_HOME", str(home))
    for name in ("HISTOQUERY_DATABASE_URL", "HISTOQUERY_QDRANT_PATH", "HISTOQUERY_ACTIVE_ENCODER"):
        monkeypatch.delenv(name, raising=False)
    # no global cache clearing: that would drop other tests' cached services with their stores still open (the
    # embedded store allows one opener per process); this home's cache key is its own
    svc = services()  # the object the page opens (same settings, from the environment)
    with svc.session() as session:
        fake_version(session, svc.store, name="enc-a", dim=16)
        first = add_images(session, "ds", ["a", "b"] * 3, prefix="first")
    _store(first, svc, "enc-a")

    at = AppTest.from_function(_preamble_page, default_timeout=APP_TIMEOUT)
    at.run()
    assert "Encoder **enc-a**" in _shown(at) and "6 stored vectors" in _shown(at)
    at.run()  # a rerun with nothing changed: the cached count
    assert "6 stored vectors" in _shown(at)

    # a new version is registered and activated: the next rerun shows it (no vectors yet), not enc-a's cached row
    with svc.session() as session:
        fake_version(session, svc.store, name="enc-b", dim=16)
    at.run()
    assert "**enc-b** has no stored vectors yet" in _shown(at), _shown(at)

    # new images are stored under it outside any job: the count follows at once, not after the cache expires
    with svc.session() as session:
        second = add_images(session, "ds", ["a", "b", "c"], prefix="second")
    _store(second, svc, "enc-b")
    at.run()
    assert "Encoder **enc-b**" in _shown(at) and "3 stored vectors" in _shown(at), _shown(at)

    # back to the first version: its own count, not the one shown last
    with svc.session() as session:
        activate_encoder(active_encoder_version(session=session, name="enc-a"), session=session, store=svc.store)
        session.commit()
    at.run()
    assert "Encoder **enc-a**" in _shown(at) and "6 stored vectors" in _shown(at), _shown(at)
    svc.store.close()
