"""The one scale: every input is brought to a typical symbol height of so many pixels.

CROHME's subsets differ by three orders of magnitude in their coordinates (HAMEX writes in
fractions of a unit, KAIST in thousands), a canvas in CSS pixels, a photo in whatever its
camera gave. The model sees them all at one scale, so that a symbol is about as high in every
input, whatever its source. The size of the writing is estimated the same way from strokes
and from pixels: the median height of the pen's marks that are not flat (a stroke, or a
connected blob of ink), which on CROHME matches the median height of the annotated symbols
(docs/experiments.md, "One scale": the ratio is 0.97-1.00 in every subset).
"""

from __future__ import annotations

import numpy as np

from inktex.errors import BlankInputError
from inktex.ink import Strokes

# A mark is flat (a minus, a fraction bar, a dot) when its height is under this share of its
# width; flat marks say little about how tall the writing is.
FLAT = 0.3


def writing_size(heights: np.ndarray, widths: np.ndarray) -> float:
    """Typical symbol height from the heights and widths of the marks (strokes or blobs)."""
    heights, widths = np.asarray(heights, float), np.asarray(widths, float)
    upright = heights > FLAT * widths
    size = float(np.median(heights[upright])) if upright.any() else 0.0
    if size <= 0:  # only flat marks (a minus alone): their length stands for a symbol's size
        size = float(np.median(np.maximum(heights, widths)))
    return size


def strokes_size(strokes: Strokes) -> float:
    """Typical symbol height of pen strokes, in their own units."""
    if not strokes:
        raise BlankInputError("no handwriting found: there are no strokes")
    spans = np.array([np.ptp(s, axis=0) for s in strokes])  # (n, 2): width, height
    return writing_size(spans[:, 1], spans[:, 0])


def normalise_strokes(strokes: Strokes, symbol_height: float) -> Strokes:
    """The strokes scaled so that a typical symbol is `symbol_height` units high, their ink
    box starting at 0, 0. A drawing with no extent (one dot) keeps its size."""
    drawn = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    drawn = [s for s in drawn if len(s)]
    if not drawn:
        raise BlankInputError("no handwriting found: there are no strokes")
    size = strokes_size(drawn)
    factor = symbol_height / size if size > 0 else 1.0
    origin = np.concatenate(drawn).min(axis=0)
    return [(s - origin) * factor for s in drawn]


def ink_size(ink: np.ndarray, threshold: float) -> float:
    """Typical symbol height of an ink map, in pixels, from its connected blobs of ink
    (8-connected pixels above `threshold`), minus the stroke's own thickness so that it
    measures the pen's path as `strokes_size` does."""
    blobs = blob_boxes(ink > threshold)
    if len(blobs) == 0:
        raise BlankInputError("no handwriting found: the image is blank")
    heights = blobs[:, 1] - blobs[:, 0]
    widths = blobs[:, 3] - blobs[:, 2]
    # Specks (noise, paper texture) are not writing: keep blobs of a fair share of the largest.
    big = np.maximum(heights, widths) >= 0.1 * np.maximum(heights, widths).max()
    thickness = stroke_thickness(ink > threshold)
    return max(1.0, writing_size(heights[big] - thickness, widths[big] - thickness))


def stroke_thickness(mask: np.ndarray) -> float:
    """Median run length of ink across rows and columns: about the pen's width in pixels."""
    runs = np.concatenate([_run_lengths(mask), _run_lengths(mask.T)])
    return float(np.median(runs)) if runs.size else 1.0


def _run_lengths(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask.astype(np.int8), ((0, 0), (1, 1)))
    edges = np.diff(padded, axis=1)
    starts = np.flatnonzero(edges.ravel() == 1)
    stops = np.flatnonzero(edges.ravel() == -1)
    return stops - starts


def blob_boxes(mask: np.ndarray) -> np.ndarray:
    """(top, bottom, left, right) of each 8-connected blob of a boolean image, as an (n, 4)
    array. It labels runs of ink row by row and joins the runs that touch (union-find over
    runs, so its cost grows with the number of runs, not of pixels)."""
    h, w = mask.shape
    padded = np.pad(mask.astype(np.int8), ((0, 0), (1, 1)))
    edges = np.diff(padded, axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, stops = np.nonzero(edges == -1)  # same order: row-major, one stop per start
    n = len(rows)
    if n == 0:
        return np.zeros((0, 4), dtype=np.int64)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_start = np.searchsorted(rows, np.arange(h + 1))
    for r in range(1, h):
        a0, a1 = row_start[r - 1], row_start[r]  # runs of the row above
        b0, b1 = row_start[r], row_start[r + 1]
        if a0 == a1 or b0 == b1:
            continue
        i = a0
        for j in range(b0, b1):
            # Skip the runs above that end left of this one (diagonal contact counts).
            while i < a1 and stops[i] < starts[j]:
                i += 1
            k = i
            while k < a1 and starts[k] <= stops[j]:
                ri, rj = find(k), find(j)
                if ri != rj:
                    parent[ri] = rj
                k += 1
    labels = np.array([find(i) for i in range(n)])
    _, labels = np.unique(labels, return_inverse=True)
    count = labels.max() + 1
    boxes = np.empty((count, 4), dtype=np.int64)
    boxes[:, 0] = np.full(count, h)
    boxes[:, 1] = 0
    boxes[:, 2] = np.full(count, w)
    boxes[:, 3] = 0
    np.minimum.at(boxes[:, 0], labels, rows)
    np.maximum.at(boxes[:, 1], labels, rows + 1)
    np.minimum.at(boxes[:, 2], labels, starts)
    np.maximum.at(boxes[:, 3], labels, stops)
    return boxes
