"""Collections whose float vectors live on disk: the page-cache warm-up on first search (and its memory bound), and
the ``rescore`` setting on both backends (embedded store; server backend through qdrant-client's local mode)."""

from __future__ import annotations

import ctypes
import logging
import mmap
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from qdrant_client import QdrantClient

from retrieval.ids import point_id
from retrieval.settings import Settings
from retrieval.store import collection_config
from retrieval.store.base import CollectionConfig
from retrieval.store.edge import EdgeVectorStore
from retrieval.store.server import ServerVectorStore
from retrieval.store.warm import _extents, evict, warm_files

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # local mode warns that payload indexes are no-ops

N, DIM = 3000, 64
#: 3,000 x 1,024 float32 = 12,000 KiB: above the engine's 10,000 KiB indexing threshold, so optimize() builds an
#: HNSW segment with int8 copies (smaller segments stay plain and are searched with float vectors only)
BIG_DIM = 1024


def _vectors(seed: int = 3, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(N, dim)).astype(np.float32)  # isotropic: int8 scores differ visibly from float ones
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def _build(root: Path, config: CollectionConfig, dim: int = DIM) -> np.ndarray:
    vecs = _vectors(dim=dim)
    s = EdgeVectorStore(root, config)
    s.ensure_collection("c", dim)
    ids = [point_id(f"h{i}", "v") for i in range(N)]
    s.upsert(
        "c", ids, vecs, [{"image_id": i + 1, "label": f"L{i % 4}", "source_path": f"/x/{i}.png"} for i in range(N)]
    )
    s.optimize("c")
    s.close()
    return vecs


def _resident(path: Path) -> float:
    """Fraction of the data pages of ``path`` (holes left out) that are in the page cache (``mincore``)."""
    size = path.stat().st_size
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    page = mmap.PAGESIZE
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), size, prot=mmap.PROT_READ)
        try:
            # the address of a read-only map: a ctypes view of its buffer needs a writable one, so ask numpy
            addr = np.frombuffer(mm, dtype=np.uint8).ctypes.data
            vec = (ctypes.c_ubyte * ((size + page - 1) // page))()
            if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
            fd = fh.fileno()
            wanted = [p for start, stop in _extents(fd) for p in range(start // page, (stop + page - 1) // page)]
        finally:
            del addr
            mm.close()
    return float(np.mean([vec[p] & 1 for p in wanted])) if wanted else 1.0


def _float_files(root: Path) -> list[Path]:
    return [p for p in warm_files(root / "collections" / "c") if "vector_storage" in p.parts and p.stat().st_blocks]


def test_warm_up_reads_the_float_vectors_and_payloads_into_the_page_cache(tmp_path: Path) -> None:
    """The first search of an on-disk collection starts the warm-up: it reads every segment file, float vectors and
    payloads included (not the int8 copies, which stay in RAM, nor the WAL), and afterwards the float vectors' pages
    are resident; "auto" rescores throughout."""
    root = tmp_path / "q"
    vecs = _build(root, CollectionConfig(vectors_on_disk=True))
    floats = _float_files(root)
    assert floats, "no float-vector file found in the collection"
    evict(root)
    if max(_resident(p) for p in floats) > 0.5:
        pytest.skip("this file system keeps the pages in memory (tmpfs?): cannot start cold")
    s = EdgeVectorStore(root, CollectionConfig(vectors_on_disk=True))
    try:
        assert s.warm_status("c") is None  # nothing read before a search
        assert s.search("c", vecs[7], 1)[0].payload["image_id"] == 8
        assert s.rescores("c")  # during the warm-up too: answers do not change when it ends
        warmer = s.warm("c")  # the one the search started
        assert warmer is not None
        res = warmer.wait(60)
        assert res.outcome == "done", res
        parts = {part for p in res.files for part in p.parts}
        assert {"vector_storage", "payload_storage"} <= parts
        assert not any(p.name.startswith("quantized") or "wal" in p.parts for p in res.files)
        assert "vector_storage" in res.files[-1].parts  # the float vectors last: the rest serves unrescored searches
        # every allocated block (a file's last block is partly beyond its end), and at least every float vector
        assert res.total_bytes - 4096 * len(res.files) <= res.bytes_read <= res.total_bytes
        assert res.bytes_read > N * DIM * 4
        assert min(_resident(p) for p in floats) == 1.0
        assert s.rescores("c")
        hits = s.search("c", vecs[7], 5)
        np.testing.assert_allclose([h.score for h in hits], vecs[[h.payload["image_id"] - 1 for h in hits]] @ vecs[7],
                                   atol=1e-5)  # fmt: skip  # rescored: float cosines
    finally:
        s.close()


def test_warm_up_respects_the_memory_bound_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """When the files do not fit in MemAvailable less the reserve, nothing is read, a warning says why and what to
    do, and "auto" keeps serving the int8 order (no disk reads), still finding the right neighbour."""
    root = tmp_path / "q"
    vecs = _build(root, CollectionConfig(vectors_on_disk=True))
    huge = CollectionConfig(vectors_on_disk=True, warm_reserve_mb=1 << 40)  # a reserve no machine has
    s = EdgeVectorStore(root, huge)
    try:
        with caplog.at_level(logging.WARNING, logger="retrieval.store.warm"):
            assert s.search("c", vecs[11], 1)[0].payload["image_id"] == 12
            warmer = s.warm("c")
            assert warmer is not None
            res = warmer.wait(60)
        assert res.outcome == "skipped" and res.bytes_read == 0, res
        assert any(
            "do not fit" in r.getMessage() and "HISTOQUERY_RESCORE=off" in r.getMessage() for r in caplog.records
        )
        assert not s.rescores("c")
    finally:
        s.close()


def test_collections_in_ram_are_not_warmed_and_always_rescored(tmp_path: Path) -> None:
    root = tmp_path / "q"
    vecs = _build(root, CollectionConfig())
    s = EdgeVectorStore(root, CollectionConfig())
    try:
        s.search("c", vecs[0], 1)
        assert not s.vectors_on_disk("c") and s.warm("c") is None and s.warm_status("c") is None
        assert s.rescores("c")
    finally:
        s.close()


def _int8_scores_differ(hits: list, vecs: np.ndarray, q: np.ndarray) -> float:  # type: ignore[type-arg]
    true = vecs[[h.payload["image_id"] - 1 for h in hits]] @ q
    return float(np.max(np.abs(np.array([h.score for h in hits]) - true)))


@pytest.fixture(scope="module")
def big_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[Path, np.ndarray]]:
    """Two indexed collections (float vectors in RAM / on disk), built once; each test reopens one with its own
    search settings (rescore and warm-up are not collection settings)."""
    out = {}
    for on_disk in (False, True):
        root = tmp_path_factory.mktemp("big") / "q"
        out[on_disk] = (
            root,
            _build(root, CollectionConfig(vectors_on_disk=on_disk, full_scan_threshold_kb=1), BIG_DIM),
        )
    return out


@pytest.mark.parametrize(
    ("rescore", "on_disk", "warm", "rescored"),
    [
        ("on", True, False, True),
        ("off", False, False, False),
        ("off", True, True, False),
        ("auto", False, False, True),  # float vectors in RAM: always rescored
        ("auto", True, False, True),  # on disk, no warm-up asked: nothing known against rescoring
        ("auto", True, True, True),  # on disk, warm
    ],
)
def test_rescore_setting_reaches_the_embedded_engine(
    big_stores: dict[bool, tuple[Path, np.ndarray]], rescore: str, on_disk: bool, warm: bool, rescored: bool
) -> None:
    """Rescored searches return the float cosines; unrescored ones the int8 estimates (visibly different on
    isotropic vectors). The collection is large enough to be indexed (BIG_DIM) and the HNSW path is forced
    (full_scan_threshold_kb=1): that is where the int8 copies are searched."""
    root, vecs = big_stores[on_disk]
    config = CollectionConfig(full_scan_threshold_kb=1, rescore=rescore, warm_on_open=warm)  # type: ignore[arg-type]
    s = EdgeVectorStore(root, config)
    try:
        if warm:
            s.search("c", vecs[0], 1)
            warmer = s.warm("c")
            assert warmer is not None and warmer.wait(60).outcome == "done"
        assert s.rescores("c") is rescored
        q = vecs[5] + 0.3 * _vectors(9, BIG_DIM)[0]
        q /= np.linalg.norm(q)
        err = max(_int8_scores_differ(s.search("c", qq, 10), vecs, qq) for qq in (q, vecs[17], vecs[400]))
        batch = s.search_batch("c", np.stack([q, vecs[17]]), 10)
        err_batch = max(_int8_scores_differ(b, vecs, qq) for b, qq in zip(batch, (q, vecs[17]), strict=True))
        if rescored:
            assert err < 1e-5 and err_batch < 1e-5
        else:
            assert err > 1e-4 and err_batch > 1e-4
    finally:
        s.close()


@pytest.mark.parametrize(("rescore", "want"), [("auto", True), ("on", True), ("off", False)])
def test_rescore_setting_reaches_the_server_backends_search_params(rescore: str, want: bool) -> None:
    """The server backend sends ``rescore`` in every search's quantisation params ("auto": the server keeps its own
    page cache, so it rescores); the search itself still answers (qdrant-client local mode)."""
    s = ServerVectorStore(QdrantClient(":memory:"), CollectionConfig(rescore=rescore))  # type: ignore[arg-type]
    try:
        vecs = _vectors()[:200]
        s.ensure_collection("c", DIM)
        s.upsert("c", [point_id(f"h{i}", "v") for i in range(200)], vecs, [{"image_id": i + 1} for i in range(200)])
        params = s._params(exact=False)
        assert params.quantization is not None and params.quantization.rescore is want
        assert s._params(exact=True).quantization.ignore is True  # type: ignore[union-attr]
        assert s.search("c", vecs[3], 1)[0].payload["image_id"] == 4
    finally:
        s.close()


def test_rescore_and_warm_up_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().rescore == "auto" and Settings().warm_on_open is True
    monkeypatch.setenv("HISTOQUERY_RESCORE", "off")
    monkeypatch.setenv("HISTOQUERY_WARM_ON_OPEN", "0")
    config = collection_config(Settings())
    assert config.rescore == "off" and config.warm_on_open is False
    monkeypatch.setenv("HISTOQUERY_RESCORE", "sometimes")
    with pytest.raises(ValidationError, match="rescore"):
        Settings()
