"""Calibrated confidences: the temperature T that makes a package's reported probabilities
p ** (1 / T) match how often its readings are right on CROHME 2013 (validation).

A sequence's probability under a label-smoothed model runs low (0.1-0.3 for most correct
readings), so a confidence bar read as "how likely is this right" says "unlikely" to almost
everything. One exponent, fitted by the likelihood of right/wrong, keeps the ranking and the
product rule (the sequence's confidence is still the product of its tokens' probabilities)
and makes the numbers mean what they say. The runtime and the browser apply it
(`inktex.runtime`, `web/app/recognizer.js`); the search reads the raw log-probabilities.

    python -m model_export.calibrate PACKAGE DATA   (DATA: prepared splits, test2013.npz)
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from inktex.evaluate import normalize_prediction
from inktex.package import TEMPERATURE, write_manifest
from inktex.runtime import OnnxRecognizer

log = logging.getLogger(__name__)
# log T from 1/4 to 20, fine enough that the fitted value's error is below what it changes
TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(20.0), 801))
BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def fit_temperature(confidences: np.ndarray, right: np.ndarray) -> float:
    """T minimising the negative log-likelihood of `right` (bools) under p ** (1 / T)."""
    logp = np.log(np.clip(np.asarray(confidences, float), 1e-12, 1.0))[None, :]
    p = np.clip(np.exp(logp / TEMPERATURES[:, None]), 1e-6, 1 - 1e-6)
    y = np.asarray(right, float)[None, :]
    nll = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)
    return float(TEMPERATURES[int(np.argmin(nll))])


def reliability(confidences: np.ndarray, right: np.ndarray) -> list[dict]:
    """How often readings are right in each confidence bin: what the bar should mean."""
    confidences, right = np.asarray(confidences, float), np.asarray(right, bool)
    rows = []
    for low, high in zip(BINS, BINS[1:], strict=False):
        inside = (confidences >= low) & ((confidences < high) | (high == BINS[-1]))
        rate = float(right[inside].mean()) if inside.any() else None
        rows.append(
            {"confidence": f"{low:.1f}-{high:.1f}", "count": int(inside.sum()), "right": rate}
        )
    return rows


def readings(package: Path, data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(raw confidence, right) of the package's readings of the prepared CROHME 2013 split."""
    from training.data import ExpressionDataset, load_split, render_all  # the strokes, rendered

    model = OnnxRecognizer.load(package)
    split = load_split(data / "test2013.npz")
    images = [
        x.astype(np.float32) / 255 for x in render_all(ExpressionDataset(split, model.preprocess))
    ]
    confidences, right = [], []
    for name, label, result in zip(
        split.names, split.labels, model.recognize_inputs(images), strict=True
    ):
        tokens, _ = normalize_prediction(name, result.latex)
        confidences.append(result.confidence**model.temperature)  # back to the raw probability
        right.append(list(tokens) == list(label))
    return np.array(confidences), np.array(right)


def set_temperature(package: Path, temperature: float) -> None:
    """T into the package's model.json, its manifest rewritten (the version is the weights')."""
    settings_path = package / "model.json"
    settings = json.loads(settings_path.read_text())
    settings[TEMPERATURE] = temperature
    settings_path.write_text(json.dumps(settings, indent=2))
    write_manifest(package, json.loads((package / "manifest.json").read_text())["version"])


def calibrate(package: Path, data: Path) -> dict:
    """Fit T on CROHME 2013 and write it into the package."""
    confidences, right = readings(package, data)
    temperature = round(fit_temperature(confidences, right), 4)
    set_temperature(package, temperature)
    report = {
        "temperature": temperature,
        "readings": len(right),
        "before": reliability(confidences, right),
        "after": reliability(confidences ** (1 / temperature), right),
    }
    log.info("confidence calibrated on CROHME 2013: %s", json.dumps(report))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("package", type=Path)
    parser.add_argument("data", type=Path, help="prepared splits (test2013.npz)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    print(json.dumps(calibrate(args.package, args.data), indent=2))


if __name__ == "__main__":
    main()
