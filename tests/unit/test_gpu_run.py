"""The lent-GPU script, rehearsed end to end on the CPU with the tiny preset: it trains,
streams its best weights to $OUT, exports and scores them, so a lease is never its first run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("torch", reason="needs the training extra")

from training.prepare import TINY_INPUT, prepare, tiny_corpus  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_gpu_run_trains_streams_and_scores_on_the_cpu(tmp_path: Path) -> None:
    data = tmp_path / "prepared"
    splits = ("train", "test2013", "test2014")
    prepare(tiny_corpus(tmp_path / "corpus", splits), data, TINY_INPUT, splits=splits)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # our python3
        "OUT": str(out),
        "RUN_DIR": str(tmp_path / "run"),
        "GPU_DATA": str(data),
        "INIT": "",  # the tiny width cannot start from the release's weights
        "SKIP_SMOKE": "1",  # the smoke test asserts CUDA
        "BEAMS": "1",
        "OMP_NUM_THREADS": "1",
        "EXTRA_SET": "--set train.preset=tiny --set model.width=tiny --set train.epochs=2",
    }
    subprocess.run(["bash", "training/gpu_run.sh", "1"], cwd=ROOT, env=env, check=True, timeout=600)
    assert (out / "best_fp16.pt").is_file() and (out / "train_report.json").is_file()
    assert json.loads((tmp_path / "run" / "package" / "model.json").read_text())["version"]
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores) == {"test2013/beam1", "test2014/beam1"}
    assert all(s["count"] == 5 for s in scores.values())
    # A second call (a lease's second command, with a new $OUT) resumes the same run and
    # still returns its best weights, exported and scored.
    env["OUT"] = str(out2 := tmp_path / "out2")
    subprocess.run(["bash", "training/gpu_run.sh", "1"], cwd=ROOT, env=env, check=True, timeout=600)
    assert "resumed from" in (out2 / "train.log").read_text()
    assert (out2 / "best_fp16.pt").is_file() and "verified" in (out2 / "export.log").read_text()
    assert len(list(out2.rglob("*"))) <= 8  # what a device call brings back
