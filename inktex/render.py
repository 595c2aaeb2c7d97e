"""The one stroke renderer: pen strokes -> a grayscale image in the CROHME offline style.

Canvas drawings, InkML samples and the CROHME offline PNGs must look alike to the model, so
this copies what was measured on the corpus's 256x256 images (tests/unit/test_render.py
checks it against them):
- the expression is scaled, aspect kept, until the dark core of its longer side spans pixels
  5..250 exactly (a faint halo reaches 3..252), and centred on the other axis;
- a stroke is 2 px thick: each segment is a 1-px line doubled across its major axis (two
  rows for a flat segment, two columns for a steep one) and every point a 2x2 square;
- then a small blur: across a straight stroke the gray runs 255, 254, 227, 27, 27, 227, 254.
Y grows downward, as on a canvas and in InkML.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from inktex.errors import BlankInputError, StrokesError
from inktex.ink import Strokes

LINE_WIDTH = 2  # px, as in the CROHME offline images
CORE_MARGIN = 5  # px from the canvas edge to the dark core on the longer side
# Blur kernel (applied to ink, per axis), solved from the corpus's profile across a straight
# stroke: ink 0.894 on the stroke, 0.110 one pixel off, 0.004 two off.
_BLUR = np.array([0.00398, 0.1056, 0.7849, 0.1056, 0.00398])


def render_strokes(
    strokes: Strokes,
    size: int = 256,
    margin: int = CORE_MARGIN,
    line_width: int = LINE_WIDTH,
) -> np.ndarray:
    """A `(size, size)` uint8 image of the strokes: dark ink on white, CROHME's style.

    Only the strokes' shape matters: they are translated and scaled to fit, so canvas
    pixels and InkML device units render alike. A one-point stroke is a dot.
    """
    drawn = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    drawn = [s for s in drawn if len(s)]
    if not drawn:
        raise BlankInputError("no handwriting found: there are no strokes to draw")
    span = size - 2 * margin - line_width  # room for the points on the longer side
    if span < 1:
        raise ValueError(f"size {size} leaves no room inside margin {margin}")
    points = np.concatenate(drawn)
    if not np.isfinite(points).all():  # parse_strokes_json refuses these; direct callers too
        raise StrokesError("a stroke has a NaN or infinite coordinate")
    lo, hi = points.min(axis=0), points.max(axis=0)
    extent = float((hi - lo).max())
    scale = span / extent if extent > 0 else 1.0
    # Whole-pixel offsets, so the longer side's points land exactly on margin..margin+span.
    offset = np.round((span - (hi - lo) * scale) / 2) + margin

    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    pixels = [(np.round((s - lo) * scale) + offset).astype(np.int64) for s in drawn]
    for xy in pixels:
        _draw_stroke(draw, xy, line_width)
    ink = np.asarray(image, dtype=np.float64) / 255.0
    for xy in pixels:  # the square "pen tip" at every point: dots, ends and sharp turns
        for dy in range(line_width):
            for dx in range(line_width):
                ink[np.minimum(xy[:, 1] + dy, size - 1), np.minimum(xy[:, 0] + dx, size - 1)] = 1
    ink = np.clip(_blur(ink, _BLUR), 0.0, 1.0)
    return np.round(255.0 * (1.0 - ink)).astype(np.uint8)


def _draw_stroke(draw: ImageDraw.ImageDraw, xy: np.ndarray, line_width: int) -> None:
    """1-px polylines, repeated `line_width` times across each run of flat or steep segments."""
    if len(xy) < 2:
        return
    d = np.abs(np.diff(xy, axis=0))
    flat = d[:, 0] >= d[:, 1]
    # Runs of consecutive segments with the same orientation share one polyline call.
    breaks = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(flat)], strict=True):
        step = np.array([0, 1]) if flat[start] else np.array([1, 0])
        run = xy[start : stop + 1]
        for k in range(line_width):
            draw.line([tuple(p) for p in (run + k * step).tolist()], fill=255, width=1)


def _blur(ink: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable convolution with a symmetric kernel; outside the canvas there is no ink."""
    r = len(kernel) // 2
    h, w = ink.shape
    padded = np.pad(ink, r)
    rows = sum(k * padded[:, i : i + w] for i, k in enumerate(kernel))
    return sum(k * rows[i : i + h, :] for i, k in enumerate(kernel))
