"""Typed shapes of what ingestion writes as JSON: batch payloads (queue messages) and a job's request and ledger.

Batches travel as JSON (Celery messages, or in-process) and jobs keep ``sources = [request, ledger]`` in one JSON
column; these TypedDicts are their one definition, so mypy checks every reader and writer of a key. They describe
the JSON exactly as it has always been written: rows stored by earlier versions read the same.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class ImageItem(TypedDict):
    """One image file of an ``images`` batch."""

    path: str
    label: str | None
    dataset_id: int | None  # a manifest row's own dataset; None = the job's
    group: str | None
    extra: dict[str, Any] | None


class ImagesBatch(TypedDict):
    """Image files, hashed then decoded by the worker."""

    kind: Literal["images"]
    items: list[ImageItem]
    roots: NotRequired[list[str]]  # the allowed roots its submitter enforced: checked again before opening


class TilesBatch(TypedDict):
    """Regions of one registered slide; ``tiles`` rows are ``[level, x, y, size, tissue fraction]``."""

    kind: Literal["tiles"]
    slide_id: int
    slide_path: str
    slide_hash: str
    dataset_id: int
    out_size: int
    label: str | None
    group: str | None
    extra: dict[str, Any]
    tiles: list[list[Any]]
    roots: NotRequired[list[str]]


class ReembedBatch(TypedDict):
    """Stored images to embed again with the job's encoder version."""

    kind: Literal["reembed"]
    image_ids: list[int]
    roots: NotRequired[list[str]]


#: One batch message (tell the kinds apart with ``payload["kind"]``: mypy narrows on it).
BatchPayload = ImagesBatch | TilesBatch | ReembedBatch


class JobRequest(TypedDict, total=False):
    """What a job was asked to do (``sources[0]``): an ingestion's inputs and options, or a re-embedding's."""

    # ingest
    inputs: list[str]
    manifest: str | None
    labels_from_folders: bool
    groups_csv: str | None
    group_from: str | None
    tiling: dict[str, Any]
    roots: list[str] | None
    # reembed
    encoder: str
    activate: bool


class Owner(TypedDict):
    """The process running an embedded job (its heartbeat tells a live job from an interrupted one)."""

    pid: int
    host: str
    heartbeat: float


class Ledger(TypedDict):
    """A job's batch ledger (``sources[1]``): planned batch count, and ``[done, failed, skipped]`` per batch."""

    batches: int
    completed: dict[str, list[int]]
    owner: NotRequired[Owner]
