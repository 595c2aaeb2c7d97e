"""Calibrated confidences: the temperature is fitted from right/wrong readings, written into
a package without changing its version, and applied to every probability it reports."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from inktex.package import ModelPackage
from inktex.runtime import OnnxRecognizer
from model_export.calibrate import fit_temperature, reliability, set_temperature


def test_the_temperature_that_made_the_outcomes_is_found_again():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.001, 0.6, 20_000) ** 2  # low raw probabilities, as a smoothed model's
    for truth in (0.5, 2.5, 6.0):
        right = rng.random(raw.size) < raw ** (1 / truth)
        assert fit_temperature(raw, right) == pytest.approx(truth, rel=0.08)


def test_the_reliability_table_counts_each_bin_and_how_often_it_was_right():
    confidences = np.array([0.1, 0.15, 0.5, 0.9, 1.0])
    right = np.array([False, True, True, True, False])
    table = {row["confidence"]: row for row in reliability(confidences, right)}
    assert table["0.0-0.2"] == {"confidence": "0.0-0.2", "count": 2, "right": 0.5}
    assert table["0.2-0.4"]["count"] == 0 and table["0.2-0.4"]["right"] is None
    assert table["0.8-1.0"]["count"] == 2  # 1.0 falls in the last bin


def test_a_calibrated_package_reports_every_probability_to_the_power_one_over_t(
    fixtures: Path, tmp_path: Path
):
    package = tmp_path / "package"
    shutil.copytree(fixtures / "tiny_model", package)
    image = (fixtures / "inkml" / "518_em_425.png").read_bytes()
    raw = OnnxRecognizer.load(package).recognize_image(image)
    version = ModelPackage.load(package).version

    set_temperature(package, 2.0)
    assert json.loads((package / "model.json").read_text())["confidence_temperature"] == 2.0
    calibrated = OnnxRecognizer.load(package)  # the manifest still verifies
    assert calibrated.version == version
    result = calibrated.recognize_image(image)
    assert result.tokens == raw.tokens  # the search reads the raw log-probabilities
    assert result.confidence == pytest.approx(math.sqrt(raw.confidence), rel=1e-9)
    assert result.token_probs == pytest.approx([math.sqrt(p) for p in raw.token_probs])
    alternatives = [a["confidence"] for a in result.alternatives]
    assert alternatives == pytest.approx([math.sqrt(a["confidence"]) for a in raw.alternatives])
