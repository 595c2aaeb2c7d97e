"""The training-curve picture: runs read from dvclive's files and chained end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("matplotlib", reason="needs the training extra")

from training.plot_curve import chain, main  # noqa: E402


def dvclive_run(folder: Path, rows: list[tuple[int, float]]) -> Path:
    val = folder / "plots" / "metrics" / "val"
    val.mkdir(parents=True)
    for name in ("exprate", "le1", "le2"):
        lines = [f"step\t{name}"] + [f"{step}\t{value + len(name)}" for step, value in rows]
        (val / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_a_run_starts_at_the_previous_runs_best_step(tmp_path):
    first = dvclive_run(tmp_path / "a", [(100, 1.0), (200, 5.0), (300, 4.0)])
    second = dvclive_run(tmp_path / "b", [(100, 6.0), (200, 7.0)])
    curves = chain([("one", first), ("two", second)])
    assert [curve.start for curve in curves] == [0, 200]
    assert curves[1].points["exprate"] == [(300, 6.0 + 7), (400, 7.0 + 7)]


def test_the_command_writes_a_png_and_refuses_a_folder_without_metrics(tmp_path, capsys):
    run = dvclive_run(tmp_path / "a", [(100, 1.0), (200, 2.0)])
    main([f"run={run}", "--out", str(tmp_path / "curve.png")])
    with Image.open(tmp_path / "curve.png") as image:
        assert image.format == "PNG" and image.width > 500
    with pytest.raises(FileNotFoundError, match="not a dvclive folder"):
        main([f"run={tmp_path}", "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit):
        main([str(run), "--out", str(tmp_path / "x.png")])
    assert "expected LABEL=DVCLIVE_DIR" in capsys.readouterr().err
