"""Batch pairs at array speed: ``Retrieval.pair_batch`` on both store backends equals the per-pair answers (scores,
decisions and error messages), also with errors in the middle of a batch, across chunk boundaries, and when the
embedded store's memory-mapped vector copy is missing or behind the engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

import retrieval.api as api_module
from retrieval.api import PairResult, Retrieval
from retrieval.db import make_engine, migrate, session_factory
from retrieval.errors import RetrievalError
from retrieval.models import Embedding
from retrieval.store.edge import EdgeVectorStore
from retrieval.store.mirror import VectorMirror, remove_mirror
from retrieval.store.server import ServerVectorStore
from tests.support.retrieval_factory import Catalog, add_images, fake_version, populate

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # qdrant-client local mode: payload indexes no-ops

LABELS = [("TUMOR", "STROMA", "LYMPHO")[i % 3] for i in range(40)]
SLIDES: list[int | None] = [None] * 40  # plain files: found by path as well as by id


@pytest.fixture(params=["edge", "server"])
def loaded(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Catalog, Retrieval, list[int], np.ndarray]]:
    url = f"sqlite:///{tmp_path / 'hq.db'}"
    migrate(url)
    session = session_factory(make_engine(url))()
    store: EdgeVectorStore | ServerVectorStore
    store = EdgeVectorStore(tmp_path / "q") if request.param == "edge" else ServerVectorStore(QdrantClient(":memory:"))
    cat = Catalog(session, store, fake_version(session, store), url)  # type: ignore[arg-type]
    rows, vecs = populate(cat, LABELS, SLIDES)
    yield cat, Retrieval(session=session, store=store), [r.id for r in rows], vecs
    cat.close()


def _per_pair(r: Retrieval, a: object, b: object) -> tuple[float | None, str | None]:
    """What ``Retrieval.pair`` says for one pair: (cos, None) or (None, its error message)."""
    try:
        return r.pair(a, b).cos, None  # type: ignore[arg-type]
    except RetrievalError as exc:
        return None, str(exc)


def _check_against_per_pair(r: Retrieval, pairs: list[tuple[object, object]], out: list[PairResult]) -> None:
    assert len(out) == len(pairs)
    for (a, b), res in zip(pairs, out, strict=True):
        cos, err = _per_pair(r, a, b)
        assert res.error == err, (a, b)
        if err is None:
            assert res.cos == pytest.approx(cos, abs=1e-6) and res.same == (res.cos >= res.threshold_cos)
        else:
            assert np.isnan(res.cos) and res.same is False


def test_batch_equals_numpy_and_per_pair_with_errors_in_the_middle(
    loaded: tuple[Catalog, Retrieval, list[int], np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat, r, ids, vecs = loaded
    monkeypatch.setattr(api_module, "PAIR_CHUNK", 7)  # errors fall on both sides of chunk boundaries
    pending = add_images(cat.session, "ds", ["TUMOR"], prefix="pending")[0]  # stored in SQL, never embedded
    path_of = {i: f"/data/img{k}.png" for k, i in enumerate(ids)}  # add_images' source paths: stored files
    missing_file = tmp_path / "no-such.png"
    rng = np.random.default_rng(7)
    good = [(int(a), int(b)) for a, b in rng.choice(ids, size=(30, 2))]
    pairs: list[tuple[object, object]] = [
        *good[:5],
        (ids[0], 987654),  # unknown id
        (path_of[ids[3]], ids[4]),  # stored file vs id
        (pending.id, ids[1]),  # not embedded
        *good[5:12],
        (str(missing_file), ids[2]),  # missing file: the per-pair message
        (path_of[ids[5]], path_of[ids[6]]),  # two stored files
        (ids[7], vecs[8] * 2.0),  # a raw vector query goes the slow path in the same batch
        *good[12:],
    ]
    out = r.pair_batch(pairs, threshold=0.5)
    _check_against_per_pair(r, pairs, out)
    errors = [i for i, o in enumerate(out) if o.error]
    assert errors == [5, 7, 15]
    assert "987654" in (out[5].error or "") and "has no vector" in (out[7].error or "")
    assert str(missing_file) in (out[15].error or "") and "does not exist" in (out[15].error or "")
    row = {i: k for k, i in enumerate(ids)}
    expected = [float(vecs[row[a]] @ vecs[row[b]]) for a, b in good]
    got = [o.cos for o in out if o.a.startswith("id:") and o.b.startswith("id:") and o.error is None]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert out[6].cos == pytest.approx(float(vecs[3] @ vecs[4]), abs=1e-6)
    assert out[16].cos == pytest.approx(float(vecs[5] @ vecs[6]), abs=1e-6)
    assert out[17].cos == pytest.approx(float(vecs[7] @ vecs[8]), abs=1e-6)
    with pytest.raises(RetrievalError, match="987654"):
        r.pair_batch(pairs, strict=True)


def test_embedded_mirror_missing_or_behind_the_engine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hq.db'}"
    migrate(url)
    session = session_factory(make_engine(url))()
    store = EdgeVectorStore(tmp_path / "q")
    cat = Catalog(session, store, fake_version(session, store), url)
    rows, vecs = populate(cat, LABELS, SLIDES)
    ids = [x.id for x in rows]
    pairs = [(ids[i], ids[(3 * i + 1) % 40]) for i in range(40)]
    want = [float(vecs[i] @ vecs[(3 * i + 1) % 40]) for i in range(40)]
    store.close()
    # a store written before the mirror existed: the engine answers, and the mirror is filled in on the way
    mirror_file = tmp_path / "q" / "mirrors" / f"{cat.version.collection}.f32"
    assert mirror_file.exists()
    remove_mirror(mirror_file)
    store = EdgeVectorStore(tmp_path / "q")
    r = Retrieval(session=session, store=store)
    np.testing.assert_allclose([o.cos for o in r.pair_batch(pairs)], want, atol=1e-6)
    filled = VectorMirror(mirror_file, cat.version.dim)
    assert filled.count() == 40
    np.testing.assert_allclose(filled.read(np.array(ids))[0], vecs, atol=1e-6)
    # a point deleted through the store (doctor --repair) is gone from the mirror too: the per-pair error, not a score
    gone = session.get(Embedding, (ids[1], cat.version.id))
    assert gone is not None
    store.delete(cat.version.collection, [gone.point_id])
    out = r.pair_batch([(ids[0], ids[1]), (ids[0], ids[2])])
    assert out[0].error is not None and "point is missing" in out[0].error
    assert out[0].error == _per_pair(r, ids[0], ids[1])[1]
    assert out[1].cos == pytest.approx(float(vecs[0] @ vecs[2]), abs=1e-6)
    store.close()
    session.close()
