"""Images of handwriting from pen strokes: the corpus's offline style, then what a camera or
scanner does to a page.

Training sends a share of its inputs down the image path (`inktex.preprocess`), so that an
uploaded PNG or photo reads like the same strokes: fitting an expression into 256 x 256 blurs
and thickens it, and the scale must be estimated from its ink. The benchmark degrades the
corpus's PNGs with the same functions at fixed settings (`model_export.bench`); training
draws their settings at random. Arrays are grayscale uint8, dark ink on light paper.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from inktex.ink import Strokes
from inktex.render import LINE_WIDTH, render_strokes

OFFLINE_SIZE = 256  # px: the side of the corpus's PNG renderings


def rotated(gray: np.ndarray, degrees: float) -> np.ndarray:
    """The page turned; the canvas grows to hold it, and the new corners are paper."""
    image = Image.fromarray(gray).rotate(degrees, Image.BICUBIC, expand=True, fillcolor=255)
    return np.asarray(image)


def jpeg_bytes(gray: np.ndarray, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(gray).save(out, "JPEG", quality=quality)
    return out.getvalue()


def jpeg(gray: np.ndarray, quality: int) -> np.ndarray:
    """The image after a round trip through JPEG at `quality`."""
    return np.asarray(Image.open(io.BytesIO(jpeg_bytes(gray, quality))).convert("L"))


def scaled(gray: np.ndarray, factor: float) -> np.ndarray:
    h, w = gray.shape
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(gray).resize(size, Image.BICUBIC))


def wide_margins(gray: np.ndarray) -> np.ndarray:
    """The expression in the middle third of each side: 8/9 of the page is paper."""
    h, w = gray.shape
    page = np.full((3 * h, 3 * w), 255, dtype=np.uint8)
    page[h : 2 * h, w : 2 * w] = gray
    return page


def grey_paper(gray: np.ndarray, left: float, right: float, ink: float = 40) -> np.ndarray:
    """Unevenly lit paper, `left` at the left edge to `right` at the right, ink at `ink`."""
    paper = np.linspace(left, right, gray.shape[1], dtype=np.float32)[None, :]
    lit = ink + (paper - ink) * (gray.astype(np.float32) / 255)
    return np.round(lit).astype(np.uint8)


def inverted(gray: np.ndarray) -> np.ndarray:
    return 255 - gray


def without_dots(strokes: Strokes) -> Strokes:
    """The strokes less their one-point marks, as the corpus's PNGs draw them: 77 of CROHME
    2014's 986 expressions lose a dot (an i, a \\div, a \\ldots) in their PNG."""
    kept = [s for s in strokes if np.ptp(s, axis=0).max() > 0]
    return kept or strokes


def corpus_png(strokes: Strokes) -> np.ndarray:
    """The strokes as the corpus draws its PNGs: 256 x 256, a 2 px pen, no dots."""
    return render_strokes(without_dots(strokes), size=OFFLINE_SIZE)


def random_photo(strokes: Strokes, rng: np.random.Generator) -> np.ndarray:
    """The strokes as an image someone might upload: most at the corpus's 256 x 256 with its
    2 px pen (half of those without their dots, as the corpus draws them), the rest larger
    with a pen to match; some turned, unevenly lit, inverted or compressed."""
    size = OFFLINE_SIZE if rng.random() < 0.6 else int(rng.integers(160, 769))
    if size == OFFLINE_SIZE and rng.random() < 0.5:
        strokes = without_dots(strokes)
    pen = max(1, round(LINE_WIDTH * size / OFFLINE_SIZE * rng.uniform(0.75, 1.5)))
    gray = render_strokes(strokes, size=size, line_width=pen)
    if rng.random() < 0.3:
        gray = rotated(gray, rng.uniform(-7, 7))
    if rng.random() < 0.25:
        gray = grey_paper(gray, rng.uniform(120, 230), rng.uniform(120, 230), rng.uniform(0, 90))
    if rng.random() < 0.1:
        gray = inverted(gray)
    if rng.random() < 0.3:
        gray = jpeg(gray, int(rng.integers(35, 96)))
    return gray
