"""The image scale a package reads images at: each candidate scored by the package's own
reading of the images, the best kept."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from inktex.evaluate import normalize_prediction
from inktex.preprocess import preprocess_gray
from inktex.runtime import OnnxRecognizer
from model_export.image_scale import best_scale, exprate_at


def test_the_most_right_scale_wins_and_a_tie_goes_to_the_smaller() -> None:
    assert best_scale({1.0: 30.0, 1.25: 34.0, 1.5: 36.5, 1.75: 36.0}) == 1.5
    assert best_scale({1.0: 10.0, 1.5: 12.0, 1.25: 12.0}) == 1.25
    assert best_scale({1.0: 0.0, 1.25: 0.0}) == 1.0


def test_the_exprate_counts_right_readings_and_a_refused_image_as_wrong(fixtures: Path) -> None:
    recognizer = OnnxRecognizer.load(fixtures / "tiny_model")
    png = (fixtures / "inkml" / "518_em_425.png").read_bytes()
    gray = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    own = recognizer.recognize_inputs([preprocess_gray(gray, recognizer.preprocess)], beam=1)[0]
    label = normalize_prediction("", own.latex)[0]
    blank = np.full((64, 64), 255, dtype=np.uint8)  # no ink: the preprocessing refuses it
    scale = recognizer.preprocess.image_scale
    assert exprate_at(recognizer, [gray, blank], [label, label], scale) == 50.0
    assert exprate_at(recognizer, [gray], [label + ["x"]], scale) == 0.0
