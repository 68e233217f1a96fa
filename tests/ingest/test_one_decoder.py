"""One decoder, one path: the same file gives the same vector through training, ingestion and queries, and a
stored file reached through a symlink is found, not embedded again."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ingest.decode import file_hash
from ingest.service import submit_ingest
from retrieval.api import Retrieval
from retrieval.settings import Settings
from tests.support.ingest_checks import stored
from tests.support.ingest_inputs import he_image, make_odd_mode_images
from training.data import ImageFiles
from training.encoder import Encoder

#: Files whose pixels depend on the decoder: alpha, EXIF orientation, 16-bit, CMYK, palette, grey + alpha.
MODES = ("rgba", "exif_rotated", "gray16", "cmyk", "palette", "la")


def test_same_file_gives_bit_identical_vectors_in_training_ingest_and_query(
    embedded_settings: Settings, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    made = make_odd_mode_images(tmp_path / "data")
    files = [made[m] for m in MODES]
    copies = []
    (tmp_path / "query").mkdir()
    for f in files:  # same bytes, another path: queries embed them on the fly instead of reading the store
        copies.append(tmp_path / "query" / f.name)
        shutil.copy(f, copies[-1])

    encoder = Encoder.from_checkpoint(tiny_checkpoint, device="cpu")
    train_set = ImageFiles(files, encoder.image_size)
    items = [train_set[i] for i in range(len(files))]
    assert all(err == "" for _, _, err in items), items
    training = encoder.embed_uint8(np.stack([img.numpy() for img, _, _ in items]))

    submit_ingest(files, settings=embedded_settings, dataset="d")
    vectors = stored(embedded_settings, with_vectors=True).vectors
    ingested = np.stack([vectors[file_hash(f)] for f in files])

    with Retrieval.from_settings(embedded_settings) as r:
        resolved = r.resolve([str(c) for c in copies])
    assert resolved.image_ids == [None] * len(files) and not resolved.errors  # really embedded here
    np.testing.assert_array_equal(resolved.vectors, training)
    np.testing.assert_array_equal(ingested, training)


def test_a_stored_file_reached_through_a_symlink_is_found(embedded_settings: Settings, tmp_path: Path) -> None:
    real, data = tmp_path / "real", tmp_path / "data"
    real.mkdir()
    data.mkdir()
    he_image(96, 1).save(real / "a.png")
    (data / "link.png").symlink_to(real / "a.png")
    submit_ingest([data], settings=embedded_settings, dataset="d")  # ingested through the link
    with Retrieval.from_settings(embedded_settings) as r:
        resolved = r.resolve([str(data / "link.png"), str(real / "a.png"), str(data / ".." / "real" / "a.png")])
    assert resolved.image_ids[0] is not None and len(set(resolved.image_ids)) == 1, resolved.image_ids
    # the batch pair path looks canonical absolute paths up as written first; the link is not stored as written, so
    # it must fall back to resolving it (planted: no fallback leaves the link unfound)
    from retrieval.resolve import stored_ids_by_path

    with Retrieval.from_settings(embedded_settings) as r:
        queries = [data / "link.png", str(real / "a.png"), str(data / ".." / "real" / "a.png")]
        ids = stored_ids_by_path(queries, r.version, session=r.session)
    assert ids[0] is not None and ids == [resolved.image_ids[0]] * 3, ids


def test_a_query_refuses_a_replaced_checkpoint(embedded_settings: Settings, tmp_path: Path) -> None:
    from retrieval.catalog import active_encoder_version
    from retrieval.db import make_engine, session_factory
    from retrieval.errors import RetrievalError
    from training.testing import make_untrained_checkpoint

    he_image(96, 1).save(tmp_path / "query.png")
    engine = make_engine(embedded_settings.db_url)
    with session_factory(engine)() as session:
        checkpoint = Path(active_encoder_version(session=session).checkpoint_path)
    engine.dispose()
    original = checkpoint.read_bytes()
    make_untrained_checkpoint(checkpoint, backbone="resnet18", image_size=64, seed=7)  # replaced in place
    try:
        with Retrieval.from_settings(embedded_settings) as r, pytest.raises(RetrievalError, match="changed since"):
            r.resolve([str(tmp_path / "query.png")])
    finally:
        checkpoint.write_bytes(original)  # the session-wide checkpoint fixture is shared
