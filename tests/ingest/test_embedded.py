"""Embedded mode (no broker, SQLite, embedded Qdrant): the whole pipeline in-process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from ingest.errors import IngestError
from ingest.service import job_status, submit_ingest, submit_reembed
from ingest.stored import image_pixels
from retrieval.settings import Settings
from tests.support.ingest_checks import stored
from tests.support.ingest_inputs import he_image, make_bad_inputs, make_odd_mode_images


def _copy_sample(sample_dir: Path, dest: Path, per_class: int = 2) -> int:
    n = 0
    for cls in sorted(p for p in sample_dir.iterdir() if p.is_dir()):
        (dest / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir())[:per_class]:
            shutil.copy(f, dest / cls.name / f.name)
            n += 1
    return n


def test_every_bad_input_is_recorded_and_the_rest_stored(
    embedded_settings: Settings, sample_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    good = _copy_sample(sample_dir, data / "good")
    bad = make_bad_inputs(data / "bad")
    odd = make_odd_mode_images(data / "odd")
    blank = tmp_path / "blank_slide.png"  # a 'slide' (plain large image, fallback reader) without tissue
    Image.new("RGB", (4200, 4200), (246, 246, 246)).save(blank)
    unsupported = tmp_path / "broken.svs"
    unsupported.write_bytes(b"not a slide at all" * 64)
    statuses = []
    job_id = submit_ingest(
        [data, blank, unsupported, tmp_path / "missing_dir"],
        settings=embedded_settings,
        dataset="mixed",
        progress=statuses.append,
    )
    status = job_status(job_id, settings=embedded_settings)
    reasons = {Path(f.source).name: (f.stage, f.reason) for f in status.failures}
    assert status.status == "done"
    assert status.done == good + len(odd)
    assert status.failed == len(bad) + 3
    assert status.total == status.done + status.failed
    assert reasons["zero.png"][0] == "read" and "zero-byte" in reasons["zero.png"][1]
    assert "truncated" in reasons["truncated.jpg"][1] and "truncated" in reasons["truncated.png"][1]
    assert "not a recognised image" in reasons["notes.png"][1]
    assert "exceeds the limit" in reasons["bomb.png"][1]
    assert "too small" in reasons["one.png"][1]
    assert "no tissue" in reasons["blank_slide.png"][1]
    assert "unsupported slide format" in reasons["broken.svs"][1]
    assert "does not exist" in reasons["missing_dir"][1]
    # progress was reported from the start to the end
    # the up-front failures: missing dir, no-tissue and unsupported slides, and the bomb (every file's header is read
    # at enumeration, so its 100000 x 100000 header is refused before any worker sees it)
    assert statuses[0].processed == 4
    assert statuses[-1].processed == status.total
    s = stored(embedded_settings, "mixed")
    assert s.images == s.done == s.embeddings == s.points == good + len(odd)
    assert s.drift_free


def test_idempotent_rerun_and_duplicate_content(embedded_settings: Settings, sample_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    n = _copy_sample(sample_dir, data, per_class=1)
    first_file = next(data.rglob("*.*"))
    shutil.copy(first_file, first_file.parent / f"zz_copy{first_file.suffix}")  # same bytes: one row, one point
    job1 = job_status(submit_ingest([data], settings=embedded_settings, dataset="d", labels_from_folders=True),
                      settings=embedded_settings)  # fmt: skip
    assert (job1.done, job1.skipped, job1.failed) == (n, 1, 0)
    before = stored(embedded_settings, "d", with_vectors=True)
    assert before.images == before.points == before.distinct_hashes == n
    assert {label for _, label in before.rows.values()} == {p.name for p in sample_dir.iterdir() if p.is_dir()}
    job2 = job_status(submit_ingest([data], settings=embedded_settings, dataset="d", labels_from_folders=True),
                      settings=embedded_settings)  # fmt: skip
    assert (job2.done, job2.skipped, job2.failed) == (0, n + 1, 0)
    after = stored(embedded_settings, "d", with_vectors=True)
    assert (after.images, after.points, after.embeddings) == (before.images, before.points, before.embeddings)
    for h, v in before.vectors.items():
        assert (after.vectors[h] == v).all()


def test_manifest_labels_metadata_and_bad_rows(embedded_settings: Settings, sample_dir: Path, tmp_path: Path) -> None:
    a, b = sorted((sample_dir / "02_STROMA").iterdir())[:2]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,label,slide,dataset,patient\n"
        f"{a},stroma,S-1,cohortA,p1\n"
        f"{b},stroma,,,p2\n"
        "only,two\n"
        f"{tmp_path / 'gone.png'},x,,,p3\n"
    )
    job = job_status(submit_ingest([], settings=embedded_settings, dataset="main", manifest=manifest),
                     settings=embedded_settings)  # fmt: skip
    assert (job.done, job.failed) == (2, 2)
    assert any("row 4: expected 5 fields, got 2" in f.reason for f in job.failures)
    assert any(f.source.endswith("gone.png") and "does not exist" in f.reason for f in job.failures)
    from retrieval.db import make_engine, session_factory
    from retrieval.models import Dataset, Image

    with session_factory(make_engine(embedded_settings.db_url))() as session:
        rows = {Path(i.source_path).name: i for i in session.query(Image).all()}
        ds = {d.id: d.name for d in session.query(Dataset).all()}
    assert ds[rows[a.name].dataset_id] == "cohortA" and ds[rows[b.name].dataset_id] == "main"
    assert rows[a.name].extra == {"patient": "p1", "slide_name": "S-1"}
    assert rows[a.name].label == "stroma"


def test_slide_tiles_and_pixels_for_display(embedded_settings: Settings, sample_slide: Path) -> None:
    job = job_status(submit_ingest([sample_slide], settings=embedded_settings, dataset="slides"),
                     settings=embedded_settings)  # fmt: skip
    assert job.failed == 0 and job.done == job.total > 10
    from retrieval.db import make_engine, session_factory
    from retrieval.models import Image, Slide

    with session_factory(make_engine(embedded_settings.db_url))() as session:
        slide = session.query(Slide).one()
        tile = session.query(Image).filter(Image.slide_id == slide.id).first()
        assert tile is not None
    assert (slide.mpp_source, slide.width, slide.height) == ("metadata", 2220, 2967)
    assert tile.tile_size == 224 and tile.width == tile.height == 224 and tile.level == 0
    assert image_pixels(tile).size == (224, 224)
    assert s_points(embedded_settings) == job.done


def s_points(settings: Settings) -> int:
    return stored(settings, "slides").points


def test_reembed_fills_new_collection_then_switches(
    embedded_settings: Settings, sample_dir: Path, tmp_path: Path
) -> None:
    from training.testing import make_untrained_checkpoint

    data = tmp_path / "data"
    n = _copy_sample(sample_dir, data, per_class=1)
    submit_ingest([data], settings=embedded_settings, dataset="d")
    old = stored(embedded_settings, with_vectors=True)
    ckpt = make_untrained_checkpoint(tmp_path / "v2.pt", seed=1)
    job = job_status(submit_reembed(settings=embedded_settings, checkpoint=ckpt, name="v2"),
                     settings=embedded_settings)  # fmt: skip
    assert (job.kind, job.status, job.done, job.failed) == ("reembed", "done", n, 0)
    new = stored(embedded_settings, with_vectors=True)  # the active version is now v2
    assert new.points == new.embeddings == n
    assert set(new.vectors) == set(old.vectors)
    assert any((new.vectors[h] != old.vectors[h]).any() for h in old.vectors)  # other weights, other vectors


def test_reembed_with_missing_file_does_not_switch(
    embedded_settings: Settings, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    from training.testing import make_untrained_checkpoint

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        he_image(64, i * 7).save(data / f"{i}.png")
    submit_ingest([data], settings=embedded_settings, dataset="d")
    (data / "1.png").unlink()
    ckpt = make_untrained_checkpoint(tmp_path / "v2.pt", seed=2)
    job = job_status(submit_reembed(settings=embedded_settings, checkpoint=ckpt, name="v2"),
                     settings=embedded_settings)  # fmt: skip
    assert job.status == "failed" and job.failed == 1 and "NOT switched" in (job.error or "")
    from retrieval.catalog import active_encoder_version
    from retrieval.db import make_engine, session_factory

    with session_factory(make_engine(embedded_settings.db_url))() as session:
        assert active_encoder_version(session=session).name == "tiny"


def test_reembed_with_nothing_stored_switches_at_once(embedded_settings: Settings, tmp_path: Path) -> None:
    """No image stored: the job has no batch, so the service itself switches the alias (through ``finish_reembed``).

    Planted bug: skipping that call (the job completes, the alias stays on the old version) fails this test.
    """
    from retrieval.catalog import active_encoder_version
    from retrieval.db import make_engine, session_factory
    from training.testing import make_untrained_checkpoint

    ckpt = make_untrained_checkpoint(tmp_path / "v2.pt", seed=3)
    job = job_status(submit_reembed(settings=embedded_settings, checkpoint=ckpt, name="v2"),
                     settings=embedded_settings)  # fmt: skip
    assert (job.kind, job.status, job.done, job.failed) == ("reembed", "done", 0, 0)
    with session_factory(make_engine(embedded_settings.db_url))() as session:
        assert active_encoder_version(session=session).name == "v2"


def test_nothing_to_ingest_and_no_encoder(tmp_path: Path) -> None:
    from retrieval.errors import RetrievalError
    from retrieval.settings import get_settings

    settings = get_settings(home=tmp_path / "h", broker_url=None)
    with pytest.raises(IngestError, match="nothing to ingest"):
        submit_ingest([], settings=settings, dataset="d")
    with pytest.raises(RetrievalError, match="no active encoder"):
        submit_ingest([tmp_path], settings=settings, dataset="d")


def test_two_batches_in_flight_store_each_image_once(
    embedded_settings: Settings, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embedded mode runs two batches at once (one commits while the next embeds): with small batches, duplicate
    content spread over different batches and bad files among them, every valid image is still stored once."""
    import threading

    import ingest.runner as runner

    data = tmp_path / "data"
    n = _copy_sample(sample_dir, data, per_class=2)
    originals = sorted(data.rglob("*.*"))
    for i, src in enumerate(originals[::4]):  # same bytes under other names: they sort into later batches
        shutil.copy(src, data / f"zz_copy{i}{src.suffix}")
    copies = len(originals[::4])
    bad = make_bad_inputs(data / "zz_bad")
    active, peak, lock = [0], [0], threading.Lock()
    real = runner.execute_batch

    def spy(*args: object, **kwargs: object) -> object:  # the real batch, counting how many run at once
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            return real(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(runner, "execute_batch", spy)
    settings = embedded_settings.model_copy(update={"ingest_batch_size": 3})
    status = job_status(submit_ingest([data], settings=settings, dataset="flight"), settings=settings)
    assert peak[0] == 2  # batches really overlapped
    assert (status.done, status.skipped, status.failed) == (n, copies, len(bad))
    assert status.status == "done" and status.total == n + copies + len(bad)
    s = stored(settings, "flight")
    assert s.images == s.done == s.embeddings == s.points == s.distinct_hashes == n
    assert s.drift_free
