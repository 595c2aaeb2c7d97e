"""Stroke-level augmentation: new handwriting from the corpus's pen strokes, on the fly.

It works on strokes at the one scale (`inktex.scale`), before rendering, so it can move what
an image cannot: a single symbol or stroke, the slant of a writer, the pen's width, how
densely the pen was sampled. Each change stays within limits that keep the expression's
structure (a symbol moves by a fraction of its height, never onto its neighbour). Seeded by
the caller's generator, so the same seed gives the same strokes. Numpy only: it runs in the
data loader's worker processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inktex.ink import Strokes


@dataclass(frozen=True)
class StrokeAugment:
    input_prob: float = 1.0  # share of inputs rewritten at all; the rest are drawn as written
    symbol_prob: float = 0.5  # share of symbols moved on their own
    symbol_shift: float = 0.08  # of the symbol height
    symbol_scale: tuple[float, float] = (0.9, 1.1)
    symbol_rotate: float = 6.0  # degrees
    stroke_shift: float = 0.03  # of the symbol height, each stroke on its own
    scale: tuple[float, float] = (0.8, 1.25)  # the whole expression: the scale estimate's spread
    aspect: tuple[float, float] = (0.9, 1.1)
    slant: float = 0.25  # shear of x by y
    rotate: float = 3.0  # degrees
    point_jitter: float = 0.3  # px of noise on each point
    point_dropout: float = 0.2  # at most this share of a stroke's inner points dropped
    line_widths: tuple[int, ...] = (1, 2, 2, 3)  # px, drawn from at random


def augment_strokes(
    strokes: Strokes,
    symbols: np.ndarray,
    rng: np.random.Generator,
    symbol_height: float,
    aug: StrokeAugment = StrokeAugment(),
) -> Strokes:
    """Randomly rewritten copies of `strokes` (at the one scale); `symbols[i]` is stroke i's
    symbol index (-1 where the file has no segmentation: those move as single strokes)."""
    out = [s.copy() for s in strokes]
    for k in np.unique(symbols[symbols >= 0]):
        if rng.random() < aug.symbol_prob:
            members = np.flatnonzero(symbols == k)
            _transform(out, members, rng, symbol_height, aug)
    for s in out:
        s += rng.normal(0, aug.stroke_shift * symbol_height, size=2)
    out = _apply_global(out, rng, aug)
    return [_resample(s, rng, aug) for s in out]


def _transform(
    out: Strokes, members: np.ndarray, rng: np.random.Generator, h: float, aug: StrokeAugment
) -> None:
    """Move, scale and turn one symbol about its own centre."""
    points = np.concatenate([out[i] for i in members])
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    matrix = _rotation(rng.uniform(-aug.symbol_rotate, aug.symbol_rotate)) * rng.uniform(
        *aug.symbol_scale
    )
    shift = rng.uniform(-aug.symbol_shift, aug.symbol_shift, size=2) * h
    for i in members:
        out[i] = (out[i] - centre) @ matrix.T + centre + shift


def _apply_global(out: Strokes, rng: np.random.Generator, aug: StrokeAugment) -> Strokes:
    """One affine map for the whole expression: scale, aspect, slant, rotation."""
    scale = rng.uniform(*aug.scale)
    aspect = math.sqrt(rng.uniform(*aug.aspect))
    shear = np.array([[1.0, rng.uniform(-aug.slant, aug.slant)], [0.0, 1.0]])
    stretch = np.diag([scale * aspect, scale / aspect])
    matrix = _rotation(rng.uniform(-aug.rotate, aug.rotate)) @ shear @ stretch
    return [s @ matrix.T for s in out]


def _rotation(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def _resample(s: np.ndarray, rng: np.random.Generator, aug: StrokeAugment) -> np.ndarray:
    """Drop some inner points (a sparser pen) and jitter the rest."""
    if len(s) > 2 and aug.point_dropout > 0:
        keep = rng.random(len(s)) >= rng.uniform(0, aug.point_dropout)
        keep[0] = keep[-1] = True
        s = s[keep]
    return s + rng.normal(0, aug.point_jitter, size=s.shape)
