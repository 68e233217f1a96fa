"""A small real index for the dashboard tests: the shipped Kather sample (64 images, 8 classes) plus a few tiles
of the shipped slide, embedded with a tiny untrained resnet18 checkpoint into embedded Qdrant + SQLite.

Built with the platform's own write path (``retrieval.catalog``); the pixels are the real sample files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

TILE = 256
TILE_ORIGINS = ((0, 0), (512, 512), (1024, 1024), (1024, 2048))


@dataclass
class SampleIndex:
    """What the tests need to know about the built index."""

    home: Path
    version: str
    image_ids: dict[str, int] = field(default_factory=dict)  # file name (or "tile:x,y") -> image id
    labels: dict[int, str | None] = field(default_factory=dict)
    slide_id: int | None = None
    pair_set: str | None = None

    def env(self) -> dict[str, str]:
        """Environment for a dashboard process on this index."""
        return {"HISTOQUERY_HOME": str(self.home)}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_sample_index(
    home: Path, sample_dir: Path, slide: Path | None = None, groups: int | None = None
) -> SampleIndex:
    """Embed the sample images (and ``len(TILE_ORIGINS)`` tiles of ``slide``) into a fresh index under ``home``.

    ``groups``: put the i-th sample image (sorted by path) in group ``patient{i % groups}`` before it is embedded, so
    that its stored point carries the group, as ingestion does.
    """
    from retrieval import catalog
    from retrieval.db import make_engine, migrate, session_factory
    from retrieval.models import Image, Slide
    from retrieval.settings import get_settings
    from retrieval.store import open_vector_store
    from training.encoder import Encoder
    from training.testing import make_untrained_checkpoint

    settings = get_settings(home=home)
    migrate(settings.db_url)
    engine = make_engine(settings.db_url)
    store = open_vector_store(settings)
    ckpt = make_untrained_checkpoint(home / "checkpoints" / "tiny.pt", backbone="resnet18", image_size=64, seed=0)
    encoder = Encoder.from_checkpoint(ckpt, device="cpu")
    index = SampleIndex(home=home, version="")
    try:
        with session_factory(engine)() as session:
            version = catalog.register_encoder(ckpt, session=session, store=store, name="tiny-r18", activate=True)
            index.version = version.name
            dataset = catalog.get_or_create_dataset("kather-sample", session=session)
            rows: list[Image] = []
            pixels: list[PILImage.Image] = []
            for i, path in enumerate(sorted(sample_dir.glob("*/*"))):
                data = path.read_bytes()
                with PILImage.open(path) as img:
                    rgb = img.convert("RGB")
                row = Image(dataset_id=dataset.id, content_hash=_sha(data), source_path=str(path.resolve()),
                            width=rgb.width, height=rgb.height, label=path.parent.name, status="pending",
                            group=f"patient{i % groups}" if groups else None)  # fmt: skip
                session.add(row)
                rows.append(row)
                pixels.append(rgb)
            session.flush()
            if slide is not None:
                from ingest.slides import cached_slide, read_tile, slide_info

                info = slide_info(cached_slide(slide), slide)
                slides_ds = catalog.get_or_create_dataset("cmu-slide", session=session)
                srow = Slide(dataset_id=slides_ds.id, path=str(slide.resolve()), content_hash=_sha(slide.read_bytes()),
                             format=info.format, width=info.width, height=info.height, level_count=1,
                             mpp_source="metadata")  # fmt: skip
                session.add(srow)
                session.flush()
                index.slide_id = srow.id
                for x, y in TILE_ORIGINS:
                    tile = read_tile(slide, 0, x, y, TILE)
                    row = Image(dataset_id=slides_ds.id, content_hash=_sha(tile.tobytes() + f"{x},{y}".encode()),
                                source_path=str(slide.resolve()), slide_id=srow.id, level=0, x=x, y=y, tile_size=TILE,
                                width=TILE, height=TILE, label=None, status="pending")  # fmt: skip
                    session.add(row)
                    rows.append(row)
                    pixels.append(tile)
                session.flush()
            vectors = encoder.embed(pixels, batch_size=32)
            catalog.store_embeddings(rows, np.asarray(vectors), version, session=session, store=store)
            for row in rows:
                key = f"tile:{row.x},{row.y}" if row.slide_id is not None else Path(row.source_path).name
                index.image_ids[key] = int(row.id)
                index.labels[int(row.id)] = row.label
    finally:
        store.close()
        engine.dispose()
    return index
