"""Deterministic point ids: the same image embedded by the same encoder version always gets the same id."""

from __future__ import annotations

import uuid

#: Fixed namespace of HistoQuery point ids (never change: ids stored in Qdrant derive from it).
POINT_NAMESPACE = uuid.UUID("5b0d7c4e-6f1a-4c52-9a59-0f3c1d2b7e11")


def point_id(content_hash: str, encoder_version: str, dataset_id: int | None = None) -> str:
    """Return the Qdrant point id of an image under an encoder version.

    The same file ingested into two datasets is two SQL rows (unique per dataset and content hash), so it must be
    two points too, each with its own dataset in the payload: the dataset id is part of the key when given.

    Args:
        content_hash: The image's content hash (hex string, as stored in ``images.content_hash``).
        encoder_version: The encoder version's name (``encoder_versions.name``).
        dataset_id: The image's dataset (``images.dataset_id``); every stored image passes it.

    Returns:
        A uuid5 string, stable across runs and machines, so that upserts are idempotent.
    """
    if not content_hash or not encoder_version:
        raise ValueError("point_id needs a non-empty content_hash and encoder_version")
    key = f"{encoder_version}\x1f{content_hash}"
    if dataset_id is not None:
        key += f"\x1f{dataset_id}"
    return str(uuid.uuid5(POINT_NAMESPACE, key))
