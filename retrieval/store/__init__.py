"""Vector stores: one typed interface, two backends chosen once from settings.

``edge`` (default): qdrant-edge-py, the Qdrant engine embedded in-process on disk.
``server``: qdrant-client to a Qdrant server / cluster by URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.store.base import PAYLOAD_INDEXES, CollectionConfig, Hit, SearchFilter, VectorStore

if TYPE_CHECKING:
    from retrieval.settings import Settings

__all__ = ["PAYLOAD_INDEXES", "CollectionConfig", "Hit", "SearchFilter", "VectorStore", "open_vector_store"]


def collection_config(settings: Settings) -> CollectionConfig:
    """Index settings for new collections, from the platform settings."""
    return CollectionConfig(
        hnsw_m=settings.hnsw_m,
        hnsw_ef_construct=settings.hnsw_ef_construct,
        hnsw_ef_search=settings.hnsw_ef_search,
        quantization=settings.quantization,
        vectors_on_disk=settings.vectors_on_disk,
        rescore=settings.rescore,
        warm_on_open=settings.warm_on_open,
    )


def open_vector_store(settings: Settings) -> VectorStore:
    """Open the vector store the settings name (``vector_backend``: ``edge`` or ``server``)."""
    config = collection_config(settings)
    if settings.vector_backend == "server":
        from retrieval.store.server import ServerVectorStore

        assert settings.qdrant_url is not None  # checked by Settings
        return ServerVectorStore.from_url(settings.qdrant_url, settings.qdrant_api_key, config)
    from retrieval.store.edge import EdgeVectorStore

    assert settings.qdrant_path is not None
    return EdgeVectorStore(settings.qdrant_path, config)
