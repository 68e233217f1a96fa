"""Drawing of :mod:`retrieval.occurrence` heat maps: a slide's similarity grid as a small PNG (no Plotly, so twenty
slides render as twenty images rather than twenty charts)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage

from retrieval.occurrence import Occurrence, SlideHeat

# viridis at 9 stops (dark blue = least similar, yellow = most similar); no matplotlib needed
_STOPS = np.array(
    [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ],
    dtype=np.float32,
)
NO_TILE = (235, 235, 235)
COLOURSCALE = [[i / (len(_STOPS) - 1), f"rgb{tuple(int(c) for c in s)}"] for i, s in enumerate(_STOPS)]


def colour_range(occ: Occurrence) -> tuple[float, float]:
    """(low, high) cosine shared by every slide's map, so colours compare across slides; the query tiles (cos 1 with
    themselves) are left out so that they do not squeeze every other tile into the low end."""
    excluded = np.asarray(occ.excluded, dtype=np.int64)
    finite = [s.scores[np.isfinite(s.scores) & ~np.isin(s.image_ids, excluded)] for s in occ.slides]
    values = np.concatenate(finite) if finite else np.zeros(0)
    if values.size == 0:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    return (low, high) if high > low else (low - 1e-3, high + 1e-3)


def colours(scores: np.ndarray, low: float, high: float) -> np.ndarray:
    """``(H, W)`` scores -> ``(H, W, 3)`` uint8 viridis colours on [low, high]; NaN cells light grey."""
    # cells above ``high`` (the query tiles) take the top colour
    t = np.clip((np.nan_to_num(scores, nan=low) - low) / (high - low), 0.0, 1.0) * (len(_STOPS) - 1)
    i = np.minimum(t.astype(np.int64), len(_STOPS) - 2)
    frac = (t - i)[..., None]
    rgb = _STOPS[i] * (1 - frac) + _STOPS[i + 1] * frac
    rgb[~np.isfinite(scores)] = NO_TILE
    return rgb.astype(np.uint8)


def heat_png(heat: SlideHeat, low: float, high: float, max_px: int = 240, mark_best: bool = True) -> bytes:
    """A PNG of one slide's heat map (longest side ``max_px``, cells as sharp squares), the best tile outlined."""
    rgb = colours(heat.scores, low, high)
    h, w = rgb.shape[:2]
    scale = max(1, max_px // max(h, w))
    img = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    if mark_best and np.isfinite(heat.best_score):
        r = (heat.best_xy[1] - heat.origin[1]) // heat.stride
        c = (heat.best_xy[0] - heat.origin[0]) // heat.stride
        y0, x0 = r * scale, c * scale
        red = np.array((230, 30, 30), dtype=np.uint8)
        edge = max(1, scale // 4)
        img[y0 : y0 + scale, x0 : x0 + edge] = red
        img[y0 : y0 + scale, x0 + scale - edge : x0 + scale] = red
        img[y0 : y0 + edge, x0 : x0 + scale] = red
        img[y0 + scale - edge : y0 + scale, x0 : x0 + scale] = red
    pil = PILImage.fromarray(img)
    if max(pil.size) > max_px:
        pil.thumbnail((max_px, max_px), PILImage.Resampling.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def render_all(occ: Occurrence, max_px: int = 240) -> list[bytes]:
    """One PNG per ranked slide, on the shared colour range (what the page draws; timed by the benchmark)."""
    low, high = colour_range(occ)
    return [heat_png(s, low, high, max_px) for s in occ.slides]
