"""`inktex data show`: look at a dataset before training on it.

A contact sheet of random samples with their normalised labels, a label-length histogram
(both drawn with PIL, so the core needs no plotting library) and statistics as JSON: what
was skipped and why, token frequencies, label lengths and image sizes.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from inktex.data import Sample, SkipReport, load_split
from inktex.errors import DataError
from inktex.latex import to_latex

TOP_TOKENS = 30
PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class ShowOutputs:
    contact_sheet: Path
    histogram: Path
    stats: Path


def default_outputs(contact_sheet: Path) -> ShowOutputs:
    """`contact.png` -> `contact.lengths.png` and `contact.stats.json` beside it."""
    contact_sheet = Path(contact_sheet)
    stem = contact_sheet.with_suffix("")
    return ShowOutputs(
        contact_sheet,
        stem.with_name(stem.name + ".lengths.png"),
        stem.with_name(stem.name + ".stats.json"),
    )


def image_sizes(samples: Sequence[Sample]) -> tuple[list[tuple[int, int]], list[str]]:
    """(width, height) of each readable image (headers only) and the names that were not."""
    sizes, unreadable = [], []
    for s in samples:
        try:
            with Image.open(s.image_path) as im:
                sizes.append(im.size)
        except (OSError, ValueError):
            unreadable.append(s.name)
    return sizes, unreadable


def dataset_stats(
    samples: Sequence[Sample],
    report: SkipReport,
    sizes: Sequence[tuple[int, int]],
    bin_width: int = 5,
) -> dict:
    """Counts, skips, token frequencies, label-length and image-size statistics."""
    tokens = Counter(t for s in samples for t in s.tokens)
    lengths = np.array([len(s.tokens) for s in samples])
    wh = np.array(sizes, dtype=float).reshape(-1, 2)
    counts, edges = _histogram(lengths.tolist(), bin_width)
    return {
        "samples": len(samples),
        "skipped": {
            "count": len(report.skipped),
            "items": [{"name": n, "reason": r} for n, r in report.skipped],
        },
        "vocabulary_size": len(tokens),
        "tokens_total": int(lengths.sum()),
        "top_tokens": [{"token": t, "count": n} for t, n in tokens.most_common(TOP_TOKENS)],
        "label_length": {
            "min": int(lengths.min()),
            "mean": round(float(lengths.mean()), 3),
            **{f"p{p}": float(np.percentile(lengths, p)) for p in PERCENTILES},
            "max": int(lengths.max()),
            "histogram": {"bin_width": bin_width, "edges": edges, "counts": counts},
        },
        "image_size": {
            "width": _summary(wh[:, 0]),
            "height": _summary(wh[:, 1]),
            "most_common": [
                {"width": w, "height": h, "count": n} for (w, h), n in Counter(sizes).most_common(5)
            ],
        },
    }


def _summary(values: np.ndarray) -> dict:
    if not len(values):
        return {"min": None, "mean": None, "max": None}
    return {
        "min": int(values.min()),
        "mean": round(float(values.mean()), 3),
        "max": int(values.max()),
    }


def _histogram(lengths: Sequence[int], bin_width: int) -> tuple[list[int], list[int]]:
    """Counts of bins [edges[i], edges[i+1]) starting at 0, wide enough for the longest label."""
    n_bins = max(lengths) // bin_width + 1
    counts = [0] * n_bins
    for n in lengths:
        counts[n // bin_width] += 1
    return counts, [i * bin_width for i in range(n_bins + 1)]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _wrap(
    text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int, max_lines: int
) -> list[str]:
    """Greedy wrap at spaces (token boundaries), the last line cut with an ellipsis."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        trial = f"{line} {word}" if line else word
        if line and font.getlength(trial) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        while lines[-1] and font.getlength(lines[-1] + " ...") > width:
            lines[-1] = lines[-1][:-1]
        lines[-1] += " ..."
    return lines


def contact_sheet(
    samples: Sequence[Sample], columns: int = 6, tile: int = 256, text_lines: int = 4
) -> Image.Image:
    """Samples in a grid, each image fitted into `tile` with its name and normalised LaTeX below."""
    font, small = _font(13), _font(11)
    line_h = 16
    pad = 6
    cell_w, cell_h = tile + 2 * pad, tile + 2 * pad + line_h * (text_lines + 1)
    columns = max(1, min(columns, len(samples)))
    rows = math.ceil(len(samples) / columns)
    sheet = Image.new("RGB", (columns * cell_w, max(rows, 1) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, s in enumerate(samples):
        x, y = (i % columns) * cell_w, (i // columns) * cell_h
        with Image.open(s.image_path) as im:
            thumb = ImageOps.contain(im.convert("L"), (tile, tile))
        sheet.paste(
            thumb, (x + pad + (tile - thumb.width) // 2, y + pad + (tile - thumb.height) // 2)
        )
        draw.rectangle(
            [x + pad - 1, y + pad - 1, x + pad + tile, y + pad + tile], outline="#bbbbbb"
        )
        ty = y + pad + tile + 3
        draw.text((x + pad, ty), s.name, fill="#777777", font=small)
        for k, line in enumerate(_wrap(to_latex(list(s.tokens)), font, tile, text_lines)):
            draw.text((x + pad, ty + line_h * (k + 1)), line, fill="black", font=font)
    return sheet


def length_histogram(stats: dict, title: str, size: tuple[int, int] = (900, 420)) -> Image.Image:
    """A bar chart of `stats["label_length"]["histogram"]`."""
    hist = stats["label_length"]["histogram"]
    counts, edges = hist["counts"], hist["edges"]
    w, h = size
    left, right, top, bottom = 60, 20, 40, 50
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = _font(12)
    draw.text((left, 12), title, fill="black", font=_font(14))
    plot_w, plot_h = w - left - right, h - top - bottom
    peak = max(counts) or 1
    bar_w = plot_w / len(counts)
    for i, c in enumerate(counts):
        bar_h = plot_h * c / peak
        x0 = left + i * bar_w
        draw.rectangle([x0 + 1, top + plot_h - bar_h, x0 + bar_w - 1, top + plot_h], fill="#4c72b0")
    draw.line([left, top + plot_h, left + plot_w, top + plot_h], fill="black")
    draw.line([left, top, left, top + plot_h], fill="black")
    # About ten x tick labels, whatever the number of bins.
    step = max(1, math.ceil(len(counts) / 10))
    for i in range(0, len(edges), step):
        x = left + i * bar_w
        draw.line([x, top + plot_h, x, top + plot_h + 4], fill="black")
        draw.text((x - 6, top + plot_h + 6), str(edges[i]), fill="black", font=font)
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h - plot_h * frac
        draw.text((6, y - 7), str(round(peak * frac)), fill="black", font=font)
    draw.text((left + plot_w // 2 - 60, h - 22), "label length (tokens)", fill="black", font=font)
    return image


def show(
    root: Path,
    split: str,
    outputs: ShowOutputs,
    n: int = 24,
    seed: int = 0,
    columns: int = 6,
) -> dict:
    """Write the contact sheet, histogram and stats JSON of `<root>/<split>`; return the stats."""
    samples, report = load_split(Path(root), split)
    if not samples:
        raise DataError(f"no usable samples in {Path(root) / split}.tsv: see the skipped records")
    sizes, unreadable = image_sizes(samples)
    for name in unreadable:
        report.add(name, "image is not readable")
    bad = set(unreadable)
    readable = [s for s in samples if s.name not in bad]
    if not readable:
        raise DataError(f"no readable images under {Path(root) / split}")
    stats = {"root": str(root), "split": split, **dataset_stats(readable, report, sizes)}
    picked = random.Random(seed).sample(readable, min(n, len(readable)))
    for path in (outputs.contact_sheet, outputs.histogram, outputs.stats):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(picked, columns=columns).save(outputs.contact_sheet)
    bins = stats["label_length"]["histogram"]["bin_width"]
    title = f"{split}: {stats['samples']} labels, lengths in bins of {bins}"
    length_histogram(stats, title).save(outputs.histogram)
    Path(outputs.stats).write_text(
        json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return stats


def summary_text(stats: dict) -> str:
    """A few lines for the terminal; the JSON holds the rest."""
    ll, size = stats["label_length"], stats["image_size"]
    top = " ".join(f"{t['token']}:{t['count']}" for t in stats["top_tokens"][:10])
    skipped = stats["skipped"]
    lines = [
        f"{stats['split']} at {stats['root']}: {stats['samples']} samples, "
        f"{skipped['count']} skipped",
        f"labels: {stats['tokens_total']} tokens, {stats['vocabulary_size']} distinct; length "
        f"min {ll['min']} mean {ll['mean']} p50 {ll['p50']:g} p90 {ll['p90']:g} "
        f"p99 {ll['p99']:g} max {ll['max']}",
        f"images: width {size['width']['min']}-{size['width']['max']}, "
        f"height {size['height']['min']}-{size['height']['max']}",
        f"top tokens: {top}",
    ]
    lines += [f"skipped {s['name']}: {s['reason']}" for s in skipped["items"][:5]]
    if skipped["count"] > 5:
        lines.append(f"... and {skipped['count'] - 5} more skipped (see the stats JSON)")
    return "\n".join(lines)
