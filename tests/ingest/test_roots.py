"""Allowed roots hold for every file a job opens: the three attacks of issue #12, NUL bytes, empty roots."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ingest.errors import BadImageError, PathNotAllowedError
from ingest.paths import REFUSED, Roots, check_allowed
from ingest.service import job_status, submit_ingest
from ingest.sources import enumerate_sources
from ingest.stored import image_pixels
from retrieval.settings import Settings, get_settings
from tests.support.ingest_checks import stored
from tests.support.ingest_inputs import he_image


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """``data/`` (the allowed root) with one good image, and ``outside/`` with a secret image next to it."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "sub").mkdir(parents=True)
    outside.mkdir()
    he_image(96, 1).save(data / "sub" / "good.png")
    he_image(96, 2).save(outside / "secret.png")
    he_image(96, 3).save(outside / "secret2.png")
    return {"data": data, "outside": outside}


def test_the_three_attacks_are_refused_with_one_reason(
    embedded_settings: Settings, layout: dict[str, Path], tmp_path: Path
) -> None:
    data, outside = layout["data"], layout["outside"]
    # 1. manifest rows outside the root: absolute and ../
    manifest = data / "cohort.csv"
    manifest.write_text(f"path,label\nsub/good.png,ok\n{outside / 'secret.png'},x\n../outside/secret2.png,x\n")
    # 2. a symlink in the folder to an outside file; 3. passwd.png -> /etc/passwd; and a link to nothing at all
    (data / "sub" / "link.png").symlink_to(outside / "secret.png")
    (data / "sub" / "passwd.png").symlink_to("/etc/passwd")
    (data / "sub" / "ghost.png").symlink_to(tmp_path / "nowhere" / "nothing.png")
    settings = embedded_settings.model_copy(update={"allowed_roots": [data]})  # as the CLI with roots configured
    folder_job = submit_ingest([data / "sub"], settings=settings, dataset="folder")
    manifest_job = submit_ingest([], manifest=manifest, settings=settings, dataset="manifest")

    folder = job_status(folder_job, settings=settings)
    reasons = {Path(f.source).name: f.reason for f in folder.failures}
    assert (folder.done, folder.failed) == (1, 3), folder
    # one reason whatever is (or is not) at the other end: nothing says what exists outside the roots
    assert reasons == {"link.png": REFUSED, "passwd.png": REFUSED, "ghost.png": REFUSED}
    by_manifest = job_status(manifest_job, settings=settings)
    assert by_manifest.failed == 2 and {f.reason for f in by_manifest.failures} == {REFUSED}
    assert not any("secret" in f.source and str(outside) in f.reason for f in by_manifest.failures)
    # nothing from outside was stored: only the one good file (once per dataset)
    s = stored(settings, with_vectors=True)
    assert s.images == 2 and s.distinct_hashes == 1
    assert [p for p, _ in s.rows.values()] == [str((data / "sub" / "good.png").resolve())]


def test_workers_check_again_what_they_open(embedded_settings: Settings, layout: dict[str, Path]) -> None:
    """A file swapped for a symlink to the outside after enumeration is still refused when the batch opens it."""
    data, outside = layout["data"], layout["outside"]
    he_image(96, 4).save(data / "sub" / "swapped.png")
    settings = embedded_settings.model_copy(update={"allowed_roots": [data]})
    swapped = []

    def swap(status: object) -> None:  # called once before the first batch runs
        if not swapped:
            (data / "sub" / "swapped.png").unlink()
            (data / "sub" / "swapped.png").symlink_to(outside / "secret.png")
            swapped.append(True)

    job = job_status(submit_ingest([data], settings=settings, dataset="d", progress=swap), settings=settings)
    assert (job.done, job.failed) == (1, 1) and job.failures[0].reason == REFUSED, job


def test_thumbnails_do_not_reread_stored_paths_outside_the_roots(
    embedded_settings: Settings, layout: dict[str, Path]
) -> None:
    from retrieval.db import make_engine, session_factory
    from retrieval.models import Image

    submit_ingest([layout["outside"] / "secret.png"], settings=embedded_settings, dataset="d")  # no roots: stored
    engine = make_engine(embedded_settings.db_url)
    with session_factory(engine)() as session:
        row = session.query(Image).one()
        assert image_pixels(row).size == (96, 96)  # no roots configured: readable
        with pytest.raises(BadImageError, match=REFUSED):
            image_pixels(row, roots=[layout["data"]])
    engine.dispose()


def test_nul_bytes_and_empty_roots_are_refused_cleanly(layout: dict[str, Path], tmp_path: Path) -> None:
    data = layout["data"]
    with pytest.raises(PathNotAllowedError, match="NUL byte"):
        check_allowed(f"{data}/sub\x00/good.png", [data])
    found = enumerate_sources([f"{data}/a\x00b.png", data / "sub"])
    assert [f.reason for f in found.failures] == ["not a valid path (it contains a NUL byte)"]
    assert len(found.items) == 1
    with pytest.raises(PathNotAllowedError, match="empty string"):
        Roots([""])
    with pytest.raises(ValidationError, match="empty root"):
        get_settings(home=tmp_path, allowed_roots=[""])
    with pytest.raises(ValidationError, match="empty root"):
        get_settings(home=tmp_path, allowed_roots=[data, " "])
