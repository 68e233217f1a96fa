"""benchmarks/bench_upsert_scale.py compares payload shapes at scale; its table only means something if each variant
stores the payload its name says. Planted bugs: ``no-none`` keeping the None fields (it would time the product
payload twice), ``id-only`` or ``slim`` losing ``image_id`` (the memory-mapped copy is keyed by it), the product
payload drifting from the ingestion payload's keys."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_each_payload_variant_has_the_fields_its_name_says() -> None:
    import bench_upsert_scale as b

    from retrieval.catalog import point_payload
    from retrieval.models import Image

    product = b.payload(7)
    assert set(product) == set(point_payload(Image(id=1, dataset_id=1), "d"))
    assert b.payload(7, "slim") == {k: product[k] for k in b.SLIM_FIELDS}
    no_none = b.payload(7, "no-none")
    assert None not in no_none.values() and no_none == {k: v for k, v in product.items() if v is not None}
    assert len(no_none) < len(product)
    assert b.payload(7, "id-only") == {"image_id": 8}
    assert set(b.VARIANTS) >= {"product", "slim", "no-none", "id-only", "bare"}
