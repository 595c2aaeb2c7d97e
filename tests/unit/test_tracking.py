"""Training logs: a lent GPU's JSON lines replayed through dvclive for its release."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("dvclive", reason="needs the training extra")

from training.tracking import Tracker, replay  # noqa: E402


def read_tsv(path: Path) -> list[tuple[int, float]]:
    rows = path.read_text().splitlines()[1:]
    return [(int(step), float(value)) for step, value in (row.split("\t") for row in rows)]


def test_a_resumed_run_is_replayed_with_the_steps_it_trained_again_read_once(
    tmp_path: Path, monkeypatch
) -> None:
    # The GPU machine has no dvclive: the tracker falls back to JSON lines there.
    monkeypatch.setitem(__import__("sys").modules, "dvclive", None)
    first = Tracker(tmp_path)
    for step in (20, 40):
        first.log({"train/loss": 1.0}, step=step)
    first.log({"val/exprate": 10.0}, step=40)  # the checkpoint the run resumes from
    first.log({"train/loss": 0.9}, step=60)  # then cut before its next validation
    first.close()
    resumed = Tracker(tmp_path)
    resumed.log({"train/loss": 0.5}, step=60)
    resumed.log({"val/exprate": 20.0}, step=70)
    resumed.close()
    monkeypatch.undo()
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 6

    assert replay(tmp_path) == 5
    metrics = tmp_path / "dvclive" / "plots" / "metrics"
    assert read_tsv(metrics / "train" / "loss.tsv") == [(20, 1.0), (40, 1.0), (60, 0.5)]
    assert read_tsv(metrics / "val" / "exprate.tsv") == [(40, 10.0), (70, 20.0)]
    summary = json.loads((tmp_path / "dvclive" / "metrics.json").read_text())
    assert summary["step"] == 70 and summary["val"]["exprate"] == 20.0
