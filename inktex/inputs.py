"""What people send -> the model's input, each kind through the training data's pipeline:
images through `preprocess`, pen strokes (canvas JSON or InkML) through the one renderer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inktex.ink import parse_strokes_json, read_inkml
from inktex.preprocess import (
    PreprocessConfig,
    preprocess_bytes,
    preprocess_gray,
    strokes_to_input,
)
from inktex.render import render_strokes


def from_image(data: bytes, cfg: PreprocessConfig) -> np.ndarray:
    return preprocess_bytes(data, cfg)


def from_strokes(strokes: object, cfg: PreprocessConfig) -> np.ndarray:
    """Strokes as parsed arrays, or as the JSON a canvas sends ([[[x, y], ...], ...])."""
    if not (
        isinstance(strokes, list) and strokes and all(isinstance(s, np.ndarray) for s in strokes)
    ):
        strokes = parse_strokes_json(strokes)
    if cfg.at_scale:
        return strokes_to_input(strokes, cfg)
    return preprocess_gray(render_strokes(strokes), cfg)


def from_inkml(data: bytes | str, cfg: PreprocessConfig) -> np.ndarray:
    return from_strokes(read_inkml(data).strokes, cfg)


def from_path(path: Path, cfg: PreprocessConfig) -> np.ndarray:
    """InkML by its suffix; anything else is sniffed as an image."""
    data = Path(path).read_bytes()
    if Path(path).suffix.lower() == ".inkml":
        return from_inkml(data, cfg)
    return from_image(data, cfg)
