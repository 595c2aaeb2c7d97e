"""`make bench` end to end on a handful of CROHME images and a tiny model trained on the fly;
the degraded copies it scores. No timing is asserted: only that every measure is there and
sane (the standards forbid timed unit tests; the numbers belong in the benchmark note)."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inktex.ink import read_inkml
from model_export import bench
from model_export.field import release_gates

ROOT = Path(__file__).resolve().parents[2]


def _gray(data: bytes) -> tuple[str, np.ndarray]:
    image = Image.open(io.BytesIO(data))
    return image.format, np.asarray(image.convert("L"))


@pytest.fixture(scope="module")
def original(fixtures: Path) -> bytes:
    """A real CROHME offline image (dark ink on white), committed with its source named."""
    return (fixtures / "inkml" / "518_em_425.png").read_bytes()


def test_each_degradation_is_what_its_name_says(original):
    fmt, clean = _gray(original)
    h, w = clean.shape
    copies = {kind: _gray(bench.degrade(original, kind)) for kind in bench.DEGRADATIONS}
    assert set(copies) == {
        "inverted",
        "rotated +5",
        "rotated -5",
        "JPEG q60",
        "scaled 3x",
        "wide margins",
        "grey paper",
    }
    assert np.array_equal(copies["inverted"][1], 255 - clean)
    for kind in ("rotated +5", "rotated -5"):  # the canvas grows to hold the turned page
        assert copies[kind][1].shape[0] > h and copies[kind][1].shape[1] > w
        assert np.median(copies[kind][1]) == 255  # the new corners are paper, not black
    assert not np.array_equal(copies["rotated +5"][1], copies["rotated -5"][1])
    assert copies["JPEG q60"][0] == "JPEG" and copies["JPEG q60"][1].shape == (h, w)
    assert copies["scaled 3x"][1].shape == (3 * h, 3 * w)
    margins = copies["wide margins"][1]
    assert margins.shape == (3 * h, 3 * w)
    assert np.array_equal(margins[h : 2 * h, w : 2 * w], clean)
    assert (margins[:h] == 255).all() and (margins[2 * h :] == 255).all()
    grey = copies["grey paper"][1]
    assert 150 <= grey[0, 0] <= 155 and 195 <= grey[0, -1] <= 200  # unevenly lit grey
    assert grey.min() < 60  # the ink stays dark
    assert all(f in ("PNG", "JPEG") for f, _ in copies.values())


def test_a_png_of_other_strokes_is_told_from_a_drawing_of_its_own(fixtures, original):
    own = read_inkml(fixtures / "inkml" / "518_em_425.inkml").strokes
    other = read_inkml(fixtures / "inkml" / "27_em_120.inkml").strokes
    assert bench.draws_its_strokes(original, own)
    assert not bench.draws_its_strokes(original, other)


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.crohme
def test_the_bench_measures_everything_on_a_tiny_model(crohme, tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_export.bench",
            "--package",
            str(tmp_path / "absent"),
            "--checkpoint",  # trains nothing: the run's work is the same on any machine
            str(ROOT / "tests" / "fixtures" / "knows_fixtures.pt"),
            "--images",
            "4",
            "--cold-runs",
            "1",
            "--json",
            str(out_json),
            "--markdown",
            str(out_md),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "INKTEX_DATA": str(crohme.parent)},
        timeout=1800,  # a ceiling for a hang: it times every runner, on a machine that may be busy
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out_json.read_text())

    assert r["model"]["source"].endswith("knows_fixtures.pt, exported on the fly")
    assert r["model"]["parameters"] > 0 and r["model"]["checkpoint_preprocess_matches"]
    images = dict(r["images"])
    left_out = images.pop("png_of_other_strokes")
    assert images == {"split": "test2014", "count": 4, "refused_clean": 0}
    assert r["robustness"]["clean"]["count"] == 4 - len(left_out)
    for key, threads in (("1_thread", 1), ("2_threads", 2)):
        stats = r["latency_ms"][key]
        runners = {"onnxruntime", "pytorch"} | (
            {"onnxruntime_step_1_thread"} if threads > 1 else set()
        )
        assert set(stats) == runners | {"ort_over_torch_p50"}
        for name in runners:
            assert 0 < stats[name]["p50"] <= stats[name]["p95"]
        assert stats["ort_over_torch_p50"] == pytest.approx(
            stats["onnxruntime"]["p50"] / stats["pytorch"]["p50"], abs=1e-4
        )
    components = r["components_1_thread"]
    for name in ("onnxruntime", "pytorch"):
        assert components[name]["encoder_ms"] > 0 and components[name]["step_us"] > 0
    assert components["ort_over_torch_estimate_at_20_tokens"] > 0
    t = r["throughput_images_per_s"]
    assert t["batch_size"] == 16 and t["threads"] == 2
    assert min(t["onnxruntime_greedy"], t["pytorch_greedy"]) > 0
    assert t["onnxruntime_beam_with_preprocessing"] > 0
    assert len(r["cold_start_s"]["runs"]) == 1 and r["cold_start_s"]["median"] > 0
    assert 0 < r["package_mb"] < 10
    assert 1 <= r["mean_greedy_tokens"] <= 200
    assert all(0 <= v <= 100 for v in r["exprate"].values())
    assert set(r["exprate"]) == {"onnxruntime_beam", "onnxruntime_greedy", "pytorch_greedy"}
    assert 0 <= r["greedy_agreement"] <= 1

    robustness = r["robustness"]
    assert list(robustness) == ["clean", "PNG 256x256", *bench.DEGRADATIONS]
    for kind, q in robustness.items():
        assert 0 <= q["exprate"] <= 100 and 0 <= q["token_accuracy"] <= 100
        assert 0 <= q["refused"] <= 4
        if kind != "clean":
            for ratio in ("relative_exprate", "relative_token_accuracy"):
                assert q[ratio] is None or q[ratio] >= 0

    # the candidate's beam beside the bundled release's, on the same expressions
    against = r["against_baseline"]
    assert against["baseline"]["package"].endswith(str(Path("models") / "release"))
    assert against["images"] == 4 and against["beam"] == bench.BASELINE_BEAM
    stats = against["latency_ms"]
    assert min(stats["candidate"]["p50"], stats["baseline"]["p50"]) > 0
    assert against["candidate_over_baseline_p50"] == pytest.approx(
        stats["candidate"]["p50"] / stats["baseline"]["p50"], abs=1e-4
    )
    assert min(against["mean_input_pixels"].values()) > 0

    limits = {**bench.GATES, **bench.BASELINE_GATES}
    assert set(r["gates"]) == set(limits)
    for name, gate in r["gates"].items():
        limit, op = limits[name]
        assert gate["limit"] == pytest.approx(limit, abs=1e-4)
        value = gate["value"]
        expected = value is not None and (value <= limit if op == "<=" else value >= limit)
        assert gate["passed"] == expected, (name, gate)
        assert value is None or math.isfinite(value)

    # the package's own metrics.json beside the field, with the release gates it implies
    assert r["release"]["gates"] == release_gates(r["release"]["metrics"])

    markdown = out_md.read_text()
    assert markdown == bench.to_markdown(r)
    for heading in (
        "latency per image",
        "cold start",
        "ExpRate",
        "grey paper",
        "candidate / baseline",
        "gate",
        "BTTR",
    ):
        assert heading in markdown
    assert markdown in proc.stdout  # printed as well as written
