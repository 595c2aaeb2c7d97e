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
    drawn = _checked(strokes)
    span = size - 2 * margin - line_width  # room for the points on the longer side
    if span < 1:
        raise ValueError(f"size {size} leaves no room inside margin {margin}")
    points = np.concatenate(drawn)
    lo, hi = points.min(axis=0), points.max(axis=0)
    extent = float((hi - lo).max())
    scale = span / extent if extent > 0 else 1.0
    # Whole-pixel offsets, so the longer side's points land exactly on margin..margin+span.
    offset = np.round((span - (hi - lo) * scale) / 2) + margin
    pixels = [np.round((s - lo) * scale) + offset for s in drawn]
    ink = draw_ink(pixels, size, size, line_width)
    return np.round(255.0 * (1.0 - ink)).astype(np.uint8)


def render_at_scale(strokes: Strokes, margin: int, line_width: int = LINE_WIDTH) -> np.ndarray:
    """A float32 ink map (ink 1 on 0) of strokes already in pixels (`inktex.scale`), drawn
    as they are, `margin` pixels of paper around the ink box."""
    drawn = _checked(strokes)
    lo = np.concatenate(drawn).min(axis=0)
    pixels = [np.round(s - lo) + margin for s in drawn]
    hi = np.concatenate(pixels).max(axis=0)
    width, height = (int(v) + line_width + margin for v in hi)
    return draw_ink(pixels, height, width, line_width).astype(np.float32)


def _checked(strokes: Strokes) -> list[np.ndarray]:
    drawn = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    drawn = [s for s in drawn if len(s)]
    if not drawn:
        raise BlankInputError("no handwriting found: there are no strokes to draw")
    if not all(np.isfinite(s).all() for s in drawn):  # parse_strokes_json refuses these too
        raise StrokesError("a stroke has a NaN or infinite coordinate")
    return drawn


def draw_ink(pixels: list[np.ndarray], height: int, width: int, line_width: int) -> np.ndarray:
    """Ink in [0, 1] of strokes at whole-pixel coordinates on a `height` x `width` canvas."""
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    pixels = [xy.astype(np.int64) for xy in pixels]
    for xy in pixels:
        _draw_stroke(draw, xy, line_width)
    ink = np.asarray(image, dtype=np.float64) / 255.0
    points = np.concatenate(pixels)
    for dy in range(line_width):  # the square "pen tip" at every point: dots, ends, turns
        for dx in range(line_width):
            ys = np.minimum(points[:, 1] + dy, height - 1)
            ink[ys, np.minimum(points[:, 0] + dx, width - 1)] = 1
    return np.clip(_blur(ink, _BLUR), 0.0, 1.0)


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
