"""`inktex data stats`: what the InkML corpus holds, and how well the one scale holds.

Per split: how many expressions were read, skipped (and why) and read around a defect (and
which); the model inputs' sizes at the writer's scale and how many must shrink to fit; and,
from the files' symbol segmentation, the median symbol height of each subset after
normalisation, which the one scale should make the same everywhere.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inktex.data import SkipReport, iter_inkml_split
from inktex.ink import Symbol
from inktex.preprocess import PreprocessConfig, shrink_factor
from inktex.scale import normalise_strokes

PERCENTILES = (50, 90, 99, 100)


def symbol_heights(strokes: list[np.ndarray], symbols: Sequence[Symbol]) -> list[float]:
    """Height of each segmented symbol (the box of its strokes)."""
    return [float(np.ptp(np.concatenate([strokes[i] for i in s.strokes])[:, 1])) for s in symbols]


def size_summary(ink_sizes: np.ndarray, cfg: PreprocessConfig) -> dict:
    """Input heights and widths (percentiles, px) for ink boxes (N, 2) at the scale, and how
    many inputs must shrink to fit the largest."""
    ink = np.asarray(ink_sizes, dtype=float).reshape(-1, 2) + cfg.line_width
    shrunk = sum(shrink_factor(h, w, cfg) < 1 for h, w in ink)
    sizes = ink + 2 * cfg.margin
    return {
        "height_px": _percentiles(sizes[:, 0]),
        "width_px": _percentiles(sizes[:, 1]),
        "shrunk": int(shrunk),
    }


def split_stats(root: Path, split: str, cfg: PreprocessConfig) -> dict:
    report = SkipReport()
    heights: dict[str, list[float]] = defaultdict(list)  # subset -> symbols' median heights
    ink_sizes = []
    for sample in iter_inkml_split(root, split, report):
        strokes = normalise_strokes(sample.ink.strokes, cfg.symbol_height)
        ink_sizes.append(np.ptp(np.concatenate(strokes), axis=0)[::-1])
        symbols = symbol_heights(strokes, sample.ink.symbols)
        if symbols:
            subset = sample.name.split("/")[0] if "/" in sample.name else split
            heights[subset].append(float(np.median(symbols)))
    return {
        "read": len(ink_sizes),
        **report.summary(),
        **size_summary(np.array(ink_sizes), cfg),
        "median_symbol_height_px": {
            subset: round(float(np.median(v)), 1) for subset, v in sorted(heights.items())
        },
    }


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {}
    return {f"p{p}": round(float(np.percentile(values, p)), 0) for p in PERCENTILES}


def corpus_stats(root: Path, splits: list[str], cfg: PreprocessConfig) -> dict:
    stats = {split: split_stats(root, split, cfg) for split in splits}
    subsets = [h for s in stats.values() for h in s["median_symbol_height_px"].values()]
    spread = {"target_px": cfg.symbol_height}
    if subsets:
        spread |= {"min_px": min(subsets), "max_px": max(subsets)}
    return {"splits": stats, "symbol_height_across_subsets": spread}


def summary_text(stats: dict) -> str:
    lines = []
    for split, s in stats["splits"].items():
        lines.append(
            f"{split}: {s['read']} read, {sum(s['skipped'].values())} skipped, "
            f"{sum(s['repaired'].values())} read around a defect, {s['shrunk']} shrunk to fit; "
            f"input height p50 {s['height_px'].get('p50')} max {s['height_px'].get('p100')} px, "
            f"width p50 {s['width_px'].get('p50')} max {s['width_px'].get('p100')} px"
        )
        lines += [f"  skipped {n}: {reason}" for reason, n in s["skipped"].items()]
        lines += [f"  read around {n}: {what}" for what, n in s["repaired"].items()]
        heights = ", ".join(f"{k} {v}" for k, v in s["median_symbol_height_px"].items())
        lines.append(f"  median symbol height (px): {heights}")
    spread = stats["symbol_height_across_subsets"]
    if "min_px" in spread:
        lines.append(
            f"symbol height across subsets: {spread['min_px']}-{spread['max_px']} px "
            f"(target {spread['target_px']:g})"
        )
    return "\n".join(lines)
