"""One typed settings object for the whole platform.

Built by :func:`get_settings` (never at import time) and passed explicitly. Every field can be set from the
environment with the ``HISTOQUERY_`` prefix (e.g. ``HISTOQUERY_DATABASE_URL``) or from a ``.env`` file.

Why here: retrieval is the lowest package that every reader of settings may import (ingest, dashboard, cli);
training reads none (it takes explicit arguments). The fields are grouped by the package that reads them
(storage: retrieval; jobs: ingest; models; dashboard) and stay flat, so the ``HISTOQUERY_*`` names never change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Platform settings. Embedded default: SQLite + embedded Qdrant under ``home``, no broker."""

    model_config = SettingsConfigDict(env_prefix="HISTOQUERY_", env_file=".env", extra="ignore")

    # Storage (retrieval)
    home: Path = Field(default=Path("histoquery-data"), description="Root folder for embedded state.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite under home.")

    # Vector store
    vector_backend: Literal["edge", "server"] = "edge"
    qdrant_path: Path | None = Field(default=None, description="Embedded Qdrant folder; default home/qdrant.")
    qdrant_url: str | None = Field(default=None, description="Qdrant server URL (vector_backend=server).")
    qdrant_api_key: str | None = None
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    hnsw_ef_search: int = 128
    quantization: Literal["none", "int8"] = Field(
        default="int8",
        description="Scalar quantisation of new collections: int8 copies in RAM for the HNSW search, rescored with the "
        "float vectors (~2x faster top-k at 100k x 2048, recall@10 within 0.003; BENCHMARKS.md). 'none' = float only.",
    )
    vectors_on_disk: bool = Field(
        default=False,
        description="Keep the float vectors of new collections on disk, read on demand (the int8 copies stay in RAM): "
        "for collections whose float vectors do not fit in memory (1M x 2048 = 8 GB; docs/deploy.md).",
    )
    rescore: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Rescore the int8 candidates of a search with the float vectors. 'auto': always, except for an "
        "embedded collection whose float vectors are on disk and do not fit in memory (the warm-up skipped or "
        "stopped): a cold rescoring reads ~280 KiB per query, ~15 ms at 1M; without it recall@10 is ~0.01 lower. "
        "'on': always (cold queries read from disk). 'off': never (int8 order and scores). Both backends.",
    )
    warm_on_open: bool = Field(
        default=True,
        description="Embedded store: on the first search of a collection whose float vectors are on disk, read them "
        "and the payloads into the page cache in a background thread, when they fit in MemAvailable (docs/deploy.md).",
    )

    # Jobs (ingest: broker, batches, decode limits)
    broker_url: str | None = Field(default=None, description="Celery broker (redis://...); None = in-process.")
    result_backend: str | None = None
    ingest_batch_size: int = Field(default=64, ge=1, le=4096)
    task_visibility_timeout_s: int = Field(
        default=600, ge=10, description="Seconds before an unacknowledged batch (killed worker) is re-delivered."
    )
    max_image_pixels: int = Field(default=20_000 * 20_000, description="Decompression-bomb limit for images.")
    decode_memory_mb: int = Field(
        default=512,
        ge=16,
        description="Decoded pixels one process may hold at once (all decode threads together); an image whose "
        "decode alone needs more is refused with its size.",
    )

    # Models
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1' ...")
    active_encoder: str | None = Field(default=None, description="Encoder version name; default the active one.")

    # Dashboard (sign-in, server-side folders it may ingest, uploads)
    auth: Literal["none", "oidc"] = Field(
        default="none",
        description="'oidc': the dashboard requires Streamlit's OpenID Connect sign-in ([auth] in "
        ".streamlit/secrets.toml; the compose default). 'none': open (embedded demo on localhost).",
    )
    allowed_roots: list[Path] = Field(default_factory=list, description="Server-side folders ingestable from UI.")
    max_upload_mb: int = 20

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _no_empty_roots(cls, value: object) -> object:
        # Path("") is Path("."): an empty root would silently allow the whole current directory.
        if isinstance(value, list | tuple) and any(not str(v).strip() for v in value):
            raise ValueError("allowed_roots: an empty root is not allowed (it would mean the current directory)")
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{(self.home / 'histoquery.db').resolve()}"
        if self.qdrant_path is None:
            self.qdrant_path = self.home / "qdrant"
        if self.vector_backend == "server" and not self.qdrant_url:
            raise ValueError("vector_backend=server needs HISTOQUERY_QDRANT_URL (e.g. http://qdrant:6333)")
        return self

    @property
    def db_url(self) -> str:
        """The resolved SQLAlchemy URL (never None after validation)."""
        assert self.database_url is not None
        return self.database_url


def get_settings(**overrides: object) -> Settings:
    """Build the settings from environment / .env, with explicit keyword overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
