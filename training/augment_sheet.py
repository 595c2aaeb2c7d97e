"""`inktex data show --augment`: what stroke augmentation does, to look at, and what it costs.

Each row is one expression of the split: its input as the model is served it, then five
augmented copies as training draws them. Below the sheet's rows, the rate at which one core
renders augmented inputs (the trainer's data loader workers do this work).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from inktex.data import iter_inkml_split
from inktex.errors import DataError
from inktex.latex import to_latex
from inktex.preprocess import PreprocessConfig, strokes_to_input
from inktex.scale import normalise_strokes
from training.augment import StrokeAugment, augment_strokes

COPIES = 5
TILE = (96, 320)  # height, width of a cell: inputs are shown shrunk to fit, aspect kept
RATE_SAMPLES = 200


def augmented_inputs(strokes, symbols, cfg, seed: int, copies: int) -> list[np.ndarray]:
    """The served input, then `copies` augmented ones (seeded: the same seed, the same)."""
    aug = StrokeAugment()
    out = [strokes_to_input(strokes, cfg, normalised=True)]
    for k in range(copies):
        rng = np.random.default_rng([seed, k])
        moved = augment_strokes(strokes, symbols, rng, cfg.symbol_height, aug)
        width = int(rng.choice(aug.line_widths))
        out.append(strokes_to_input(moved, cfg, normalised=True, line_width=width))
    return out


def augment_sheet(
    root: Path, split: str, out: Path, cfg: PreprocessConfig, n: int = 8, seed: int = 0
) -> float:
    """Write the sheet to `out`; return augmented inputs rendered per second on one core."""
    samples = list(iter_inkml_split(Path(root), split))
    if not samples:
        raise DataError(f"no InkML under {Path(root) / 'inkml' / split}")
    picked = random.Random(seed).sample(samples, min(n, len(samples)))
    prepared = []
    for s in picked:
        symbols = np.full(len(s.ink.strokes), -1)
        for k, sym in enumerate(s.ink.symbols):
            symbols[list(sym.strokes)] = k
        prepared.append((normalise_strokes(s.ink.strokes, cfg.symbol_height), symbols, s))
    rows = [
        augmented_inputs(st, sy, cfg, seed + i, COPIES) for i, (st, sy, _) in enumerate(prepared)
    ]
    _sheet(rows, [to_latex(list(s.tokens)) for _, _, s in prepared]).save(out)
    started = time.perf_counter()
    for k in range(RATE_SAMPLES):
        strokes, symbols, _ = prepared[k % len(prepared)]
        augmented_inputs(strokes, symbols, cfg, k, 1)
    return 2 * RATE_SAMPLES / (time.perf_counter() - started)


def _sheet(rows: list[list[np.ndarray]], captions: list[str]) -> Image.Image:
    h, w = TILE
    pad, caption = 6, 16
    sheet = Image.new("L", ((w + pad) * (COPIES + 1) + pad, (h + pad + caption) * len(rows)), 255)
    draw = ImageDraw.Draw(sheet)
    for r, (inputs, text) in enumerate(zip(rows, captions, strict=True)):
        y = r * (h + pad + caption)
        draw.text((pad, y + 2), text[:150], fill=0)
        for c, x in enumerate(inputs):
            tile = Image.fromarray(np.round(255 * (1 - x)).astype(np.uint8))
            tile = ImageOps.contain(tile, (w, h))
            left = pad + c * (w + pad)
            sheet.paste(tile, (left, y + caption))
            draw.rectangle([left - 1, y + caption - 1, left + w, y + caption + h], outline=180)
    return sheet
