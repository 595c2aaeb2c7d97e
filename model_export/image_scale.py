"""The image scale: how much larger than its estimated writing size a package reads an image
best, fitted on CROHME 2013 (validation) and kept in the package's preprocessing.

An image's strokes are blurred and thickened where the renderer draws the pen's strokes
crisp, and the scale estimated from its blobs of ink errs where symbols touch. Read at the
scale of the strokes, the corpus's 2013 PNGs scored 33.7% against the strokes' 38.0%; read
1.5x larger, 37.9% (docs/experiments.md, session 13). The 2013 strokes are drawn as the corpus
draws its PNGs (`training.photo.corpus_png`), read back by the one image preprocessing at each
candidate scale with the package's greedy search, and the scale that reads the most right
wins (a tie goes to the smaller).

    python -m model_export.image_scale PACKAGE DATA   (DATA: prepared splits, test2013.npz)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inktex.errors import InkTeXError
from inktex.evaluate import normalize_prediction
from inktex.preprocess import PreprocessConfig, preprocess_gray
from inktex.runtime import OnnxRecognizer

log = logging.getLogger(__name__)
SCALES = (1.0, 1.25, 1.5, 1.75, 2.0)


def corpus_images(data: Path, limit: int = 0) -> tuple[list[np.ndarray], list[list[str]]]:
    """CROHME 2013's strokes from the prepared split, drawn as the corpus's PNGs, and labels."""
    from training.data import load_split
    from training.photo import corpus_png

    split = load_split(data / "test2013.npz")
    count = min(limit or len(split), len(split))
    return [corpus_png(split.strokes(i)[0]) for i in range(count)], split.labels[:count]


def exprate_at(
    recognizer: OnnxRecognizer, images: list[np.ndarray], labels: list[list[str]], scale: float
) -> float:
    """Greedy ExpRate (percent) of the images read at `scale`; an image refused scores wrong."""
    cfg: PreprocessConfig = dataclasses.replace(recognizer.preprocess, image_scale=scale)
    readable, inputs = [], []
    for i, gray in enumerate(images):
        try:
            inputs.append(preprocess_gray(gray, cfg))
            readable.append(i)
        except InkTeXError:
            pass
    results = recognizer.recognize_inputs(inputs, beam=1)
    right = sum(
        list(normalize_prediction("", r.latex)[0]) == list(labels[i])
        for i, r in zip(readable, results, strict=True)
    )
    return 100.0 * right / max(len(images), 1)


def best_scale(rates: dict[float, float]) -> float:
    """The scale that read the most right; of equals, the smallest (the least change)."""
    return max(rates, key=lambda scale: (rates[scale], -scale))


def fit_image_scale(package: Path, data: Path, scales=SCALES, limit: int = 0) -> dict:
    """The best of `scales` for the package on CROHME 2013, with each one's ExpRate."""
    recognizer = OnnxRecognizer.load(package)
    images, labels = corpus_images(data, limit)
    rates = {s: exprate_at(recognizer, images, labels, s) for s in tqdm(scales, "image scale")}
    report = {"image_scale": best_scale(rates), "images": len(images), "greedy_exprate": rates}
    log.info("image scale fitted on CROHME 2013's strokes drawn as PNGs: %s", json.dumps(report))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("package", type=Path)
    parser.add_argument("data", type=Path, help="prepared splits (test2013.npz)")
    parser.add_argument("--limit", type=int, default=0, help="2013 expressions; 0 = all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    print(json.dumps(fit_image_scale(args.package, args.data, limit=args.limit), indent=2))


if __name__ == "__main__":
    main()
