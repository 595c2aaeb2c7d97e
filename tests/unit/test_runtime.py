"""The torch-free runtime on a real (tiny) model package: inputs of every kind, integrity checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inktex.errors import ImageError, ModelPackageError, StrokesError
from inktex.ink import read_inkml
from inktex.runtime import OnnxRecognizer, Recognition


@pytest.fixture(scope="module")
def recognizer(fixtures: Path) -> OnnxRecognizer:
    return OnnxRecognizer.load(fixtures / "tiny_model")


def test_an_image_gives_latex_with_confidence_and_alternatives(recognizer, fixtures):
    result = recognizer.recognize_image((fixtures / "inkml" / "518_em_425.png").read_bytes())
    assert isinstance(result, Recognition)
    assert result.latex == " ".join(result.tokens)
    assert 0 < result.confidence <= 1
    assert len(result.token_probs) == len(result.tokens)
    assert all(0 < p <= 1 for p in result.token_probs)
    assert result.alternatives and all("latex" in a for a in result.alternatives)
    assert result.model_version == recognizer.version
    json.dumps(result.to_dict())  # the API returns it as JSON


def test_beam_and_greedy_agree_on_confident_inputs(recognizer, fixtures):
    data = (fixtures / "inkml" / "518_em_425.png").read_bytes()
    greedy = recognizer.recognize_image(data, beam=1)
    assert greedy.alternatives == []
    assert recognizer.recognize_image(data, beam=3).tokens  # a beam result exists


def test_inkml_and_canvas_strokes_read_the_same(recognizer, fixtures):
    inkml = (fixtures / "inkml" / "518_em_425.inkml").read_bytes()
    strokes = [s.tolist() for s in read_inkml(inkml).strokes]
    assert recognizer.recognize_inkml(inkml).tokens == recognizer.recognize_strokes(strokes).tokens


def test_batched_decoding_equals_one_at_a_time(recognizer, fixtures):
    paths = sorted((fixtures / "inkml").glob("*.png"))
    batched = recognizer.recognize_paths(paths)
    single = [recognizer.recognize_paths([p])[0] for p in paths]
    assert batched == single


def test_bad_inputs_raise_typed_errors(recognizer):
    with pytest.raises(ImageError):
        recognizer.recognize_image(b"definitely not an image")
    with pytest.raises(StrokesError):
        recognizer.recognize_strokes([[[0, float("nan")]]])


def test_a_tampered_package_is_refused(fixtures, tmp_path):
    package = tmp_path / "pkg"
    shutil.copytree(fixtures / "tiny_model", package)
    vocab = json.loads((package / "vocab.json").read_text())
    vocab[-1], vocab[-2] = vocab[-2], vocab[-1]
    (package / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ModelPackageError, match="manifest"):
        OnnxRecognizer.load(package)


def test_a_package_missing_a_graph_is_refused(fixtures, tmp_path):
    package = tmp_path / "pkg"
    shutil.copytree(fixtures / "tiny_model", package)
    (package / "decoder_step.onnx").unlink()
    with pytest.raises(ModelPackageError, match="decoder_step.onnx"):
        OnnxRecognizer.load(package)


def _predict(fixtures: Path, *args: str) -> subprocess.CompletedProcess:
    """`inktex predict` with the tiny package, as a user runs it: a fresh process."""
    command = [
        sys.executable,
        "-m",
        "inktex.cli",
        "predict",
        "--model",
        str(fixtures / "tiny_model"),
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True)


def test_predict_command_prints_one_line_per_file(fixtures):
    files = [str(p) for p in sorted((fixtures / "inkml").glob("*.png"))[:2]]
    out = _predict(fixtures, "--json", *files)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["file"] for line in lines] == files
    assert {"latex", "confidence", "alternatives", "model_version", "latency_ms"} <= set(lines[0])


def test_predict_reports_a_bad_file_and_goes_on(fixtures, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    good = sorted((fixtures / "inkml").glob("*.png"))[0]
    out = _predict(fixtures, str(bad), str(good))
    assert out.returncode == 2
    assert "notes.png" in out.stderr and "not a readable image" in out.stderr
    assert len(out.stdout.splitlines()) == 1
    assert np.isfinite(1.0)
