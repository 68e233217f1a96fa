"""A job's ``sources = [request, ledger]`` read through the typed accessors, as rows of earlier versions stored it."""

from __future__ import annotations

import json

from ingest.jobs import _save_ledger, job_request, ledger
from ingest.payloads import BatchPayload, ImagesBatch, JobRequest, Ledger, ReembedBatch, TilesBatch
from retrieval.models import IngestJob


def test_a_stored_job_reads_back_through_the_typed_accessors() -> None:
    """JSON exactly as earlier versions wrote it (a plain two-item list) reads back field by field.

    Planted bug: ``job_request`` reading ``sources[1]`` (the ledger) instead of ``sources[0]`` fails this test.
    """
    stored = json.loads(
        '[{"inputs": ["/data/a"], "manifest": null, "labels_from_folders": true, "groups_csv": null,'
        ' "group_from": "(P\\\\d+)", "tiling": {"tile_size": 224}, "roots": null},'
        ' {"batches": 3, "completed": {"0": [5, 1, 0]}}]'
    )
    job = IngestJob(kind="ingest", status="running", encoder_version_id=1, sources=stored)
    assert job_request(job)["group_from"] == r"(P\d+)" and job_request(job)["inputs"] == ["/data/a"]
    assert ledger(job) == {"batches": 3, "completed": {"0": [5, 1, 0]}}
    book = ledger(job)
    book["completed"]["1"] = [4, 0, 1]
    _save_ledger(job, book)
    assert job.sources == [stored[0], {"batches": 3, "completed": {"0": [5, 1, 0], "1": [4, 0, 1]}}]


def test_a_job_without_sources_has_an_empty_request_and_ledger() -> None:
    job = IngestJob(kind="reembed", status="queued", encoder_version_id=1, sources=None)
    assert job_request(job) == JobRequest() and ledger(job) == Ledger(batches=0, completed={})
    assert job_request(job).get("activate", True) is True


def test_the_batch_kinds_are_the_json_shapes() -> None:
    batches: list[BatchPayload] = [
        ImagesBatch(kind="images", items=[]),
        TilesBatch(
            kind="tiles",
            slide_id=1,
            slide_path="/s.svs",
            slide_hash="h",
            dataset_id=1,
            out_size=224,
            label=None,
            group="slide:1",
            extra={},
            tiles=[[0, 0, 0, 224, 0.9]],
        ),  # fmt: skip
        ReembedBatch(kind="reembed", image_ids=[1, 2]),
    ]
    assert [json.loads(json.dumps(b)) for b in batches] == batches  # plain JSON, as queued
