"""Is a query image something the index can answer? Tissue, flat colour and size checks, worded for the user.

A cosine of 0.98 between an 8x8 solid pink square and a stroma tile says nothing about tissue: the encoder maps any
input to a unit vector, so a query without tissue still gets confident-looking neighbours. These checks let a page
(or the CLI) warn before showing such results.

The tissue test is the slide tiler's (:func:`ingest.slides.tissue_mask`): a pixel is tissue when its HSV saturation
(:func:`ingest.slides.saturation`) is above the threshold, and a tile needs :data:`MIN_TISSUE` of its pixels to be
tissue (the tiler's default ``--min-tissue``). On a slide the threshold is Otsu's over the whole slide thumbnail,
never below :data:`ingest.slides.MIN_TISSUE_SATURATION`; a query image has no slide around it, and Otsu's threshold
on one image that is all tissue splits the tissue itself in two (a 96%-tissue tile scores 29%), so a query is
measured against the tiler's floor, :data:`ingest.slides.MIN_TISSUE_SATURATION`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ingest.slides import MIN_TISSUE_SATURATION, saturation

#: The slide tiler keeps tiles with at least this tissue fraction (``histoquery ingest --min-tissue`` default).
MIN_TISSUE = 0.5
#: Below this standard deviation (0-255) in every channel the image is one flat colour: no structure to match.
FLAT_STD = 2.0
#: A query whose shorter side is below ``input_size / TOO_SMALL_FACTOR`` is "far smaller" than the encoder input.
TOO_SMALL_FACTOR = 2
#: Larger images are checked on a thumbnail with this longest side (as the tiler's mask uses a thumbnail).
CHECK_PX = 1024


def tissue_fraction(image: Image.Image) -> float:
    """Fraction (0-1) of ``image`` whose saturation passes the slide tiler's tissue floor."""
    sat = saturation(image)
    return float((sat > MIN_TISSUE_SATURATION).mean()) if sat.size else 0.0


@dataclass(frozen=True)
class QueryCheck:
    """What the checks found about one query image.

    Attributes:
        tissue: tissue fraction by the tiler's test.
        flat: the image is one flat colour (standard deviation below :data:`FLAT_STD` in every channel).
        size: ``(width, height)``.
        input_size: the encoder's input side in pixels.
        warnings: user-worded warnings, empty when the query looks usable.
    """

    tissue: float
    flat: bool
    size: tuple[int, int]
    input_size: int
    warnings: tuple[str, ...]


def check_query(image: Image.Image, input_size: int, *, min_tissue: float = MIN_TISSUE) -> QueryCheck:
    """Check a query image for tissue, flat colour and size against the encoder's input.

    Args:
        image: the decoded query (any mode; checked as RGB).
        input_size: the encoder's input side in pixels (``EncoderVersion.image_size``).
        min_tissue: tissue fraction below which the query is called "little or no tissue".

    Returns:
        The findings, with one warning per problem.
    """
    width, height = image.size
    rgb = image.convert("RGB")
    if max(width, height) > CHECK_PX:  # fractions and flatness need no more pixels (uploads reach 100 Mpx)
        rgb = rgb.copy()
        rgb.thumbnail((CHECK_PX, CHECK_PX))
    # per channel: a solid pink square has a large spread *across* its three channels but none within each
    flat = float(np.asarray(rgb, dtype=np.float32).reshape(-1, 3).std(axis=0).max()) < FLAT_STD
    tissue = tissue_fraction(rgb)
    warnings: list[str] = []
    if flat:
        warnings.append(
            f"The image is one flat colour ({'no stained tissue' if tissue < min_tissue else 'no structure'}): "
            "there is nothing to match, so the scores below mean nothing however high they are."
        )
    elif tissue < min_tissue:
        warnings.append(
            f"Little or no tissue: only {tissue:.0%} of the image is stained tissue by the slide tiler's test (it "
            f"keeps tiles with at least {min_tissue:.0%}); it looks mostly like background, glass or fat. Scores for "
            "such a query can look confident without meaning a tissue match."
        )
    if min(width, height) * TOO_SMALL_FACTOR <= input_size:
        warnings.append(
            f"The image is {width}×{height} px, far smaller than the encoder's {input_size}×{input_size} px input: it "
            f"is enlarged {input_size / min(width, height):.0f}× before embedding, so the match is unreliable. Use "
            "a larger crop of the tissue."
        )
    return QueryCheck(tissue=tissue, flat=flat, size=(width, height), input_size=input_size, warnings=tuple(warnings))
