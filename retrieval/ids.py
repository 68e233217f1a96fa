"""Deterministic point ids: the same image embedded by the same encoder version always gets the same id."""

from __future__ import annotations

import uuid

#: Fixed namespace of HistoQuery point ids (never change: ids stored in Qdrant derive from it).
POINT_NAMESPACE = uuid.UUID("5b0d7c4e-6f1a-4c52-9a59-0f3c1d2b7e11")


def point_id(content_hash: str, encoder_version: str) -> str:
    """Return the Qdrant point id of an image under an encoder version.

    Args:
        content_hash: The image's content hash (hex string, as stored in ``images.content_hash``).
        encoder_version: The encoder version's name (``encoder_versions.name``).

    Returns:
        A uuid5 string, stable across runs and machines, so that upserts are idempotent.
    """
    if not content_hash or not encoder_version:
        raise ValueError("point_id needs a non-empty content_hash and encoder_version")
    return str(uuid.uuid5(POINT_NAMESPACE, f"{encoder_version}\x1f{content_hash}"))
