"""Dashboard fixtures: one small real index per test session (shipped sample + slide tiles, tiny encoder)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dashboard_calibrated import calibrated_index_with_copies
from tests.support.dashboard_index import SampleIndex, build_sample_index

APP_TIMEOUT = 120  # seconds: the first run of a page opens the store and loads the encoder (AppTest default: 3 s)


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path, sample_slide: Path) -> SampleIndex:
    """The 64 Kather sample images + 4 tiles of the CMU slide, embedded with an untrained resnet18 (64 px)."""
    return build_sample_index(tmp_path_factory.mktemp("dash-index"), sample_dir, sample_slide)


@pytest.fixture
def index_env(sample_index: SampleIndex, monkeypatch: pytest.MonkeyPatch) -> Iterator[SampleIndex]:
    """Point the dashboard's settings (HISTOQUERY_HOME) at the sample index for one test."""
    monkeypatch.setenv("HISTOQUERY_HOME", str(sample_index.home))
    monkeypatch.delenv("HISTOQUERY_DATABASE_URL", raising=False)
    monkeypatch.delenv("HISTOQUERY_QDRANT_PATH", raising=False)
    monkeypatch.delenv("HISTOQUERY_ALLOWED_ROOTS", raising=False)
    yield sample_index


@pytest.fixture
def empty_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty HISTOQUERY_HOME."""
    monkeypatch.setenv("HISTOQUERY_HOME", str(tmp_path / "empty-home"))
    monkeypatch.delenv("HISTOQUERY_DATABASE_URL", raising=False)
    monkeypatch.delenv("HISTOQUERY_QDRANT_PATH", raising=False)
    return tmp_path / "empty-home"


@pytest.fixture
def copies_env(
    tmp_path_factory: pytest.TempPathFactory, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SampleIndex]:
    """A calibrated copy of the sample index with byte-identical copies in a second dataset (Search cards, Pair
    confidence), as the environment of the page under test."""
    index = calibrated_index_with_copies(tmp_path_factory.getbasetemp() / "calibrated-copies", sample_dir)
    monkeypatch.setenv("HISTOQUERY_HOME", str(index.home))
    for name in ("HISTOQUERY_DATABASE_URL", "HISTOQUERY_QDRANT_PATH", "HISTOQUERY_ALLOWED_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    yield index
