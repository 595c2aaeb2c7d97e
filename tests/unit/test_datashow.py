"""`inktex data show` on the real CROHME corpus, and on a small copy with broken records."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from inktex.cli import main
from inktex.data import read_labels
from inktex.datashow import _histogram, default_outputs


def test_default_outputs_sit_beside_the_contact_sheet(tmp_path: Path) -> None:
    o = default_outputs(tmp_path / "sheet.png")
    assert (o.histogram.name, o.stats.name) == ("sheet.lengths.png", "sheet.stats.json")


def test_histogram_bins() -> None:
    assert _histogram([1, 4, 5, 12], 5) == ([2, 1, 1], [0, 5, 10, 15])


def test_data_show_test2014(
    crohme: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "contact.png"
    code = main(["data", "show", "--split", "test2014", "--n", "6", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "test2014" in printed and "986 samples, 0 skipped" in printed
    with Image.open(out) as sheet:
        # One row of six 256-px tiles with 6-px padding on each side.
        assert sheet.width == 6 * (256 + 12)
    with Image.open(tmp_path / "contact.lengths.png") as hist:
        assert hist.size == (900, 420)
    stats = json.loads((tmp_path / "contact.stats.json").read_text())
    assert stats["samples"] == 986 and stats["skipped"]["count"] == 0
    assert len(stats["top_tokens"]) == 30
    lengths = stats["label_length"]
    assert sum(lengths["histogram"]["counts"]) == 986
    assert lengths["min"] <= lengths["p50"] <= lengths["p90"] <= lengths["max"]
    assert stats["image_size"]["most_common"][0] == {"width": 256, "height": 256, "count": 986}


def test_data_show_reports_skips(
    crohme: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    (root / "mine").mkdir(parents=True)
    rows = read_labels(crohme / "test2014.tsv")[:3]
    for name, _ in rows:
        shutil.copy(crohme / "test2014" / f"{name}.png", root / "mine" / f"{name}.png")
    rows += [("no_image", "x"), (rows[0][0] + "_copy", r"\frac{1")]
    shutil.copy(crohme / "test2014" / f"{rows[0][0]}.png", root / "mine" / f"{rows[4][0]}.png")
    with open(root / "mine.tsv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, delimiter="\t", lineterminator="\n").writerows(rows)
    out = tmp_path / "sheet.png"
    code = main(
        ["data", "show", "--root", str(root), "--split", "mine", "--n", "24", "--out", str(out)]
    )
    assert code == 0
    stats = json.loads((tmp_path / "sheet.stats.json").read_text())
    assert stats["samples"] == 3
    reasons = {s["name"]: s["reason"] for s in stats["skipped"]["items"]}
    assert reasons["no_image"].startswith("no image at")
    assert reasons[rows[4][0]].startswith("label does not normalise")
    with Image.open(out) as sheet:
        assert sheet.width == 3 * (256 + 12)  # --n beyond the split shows all three


def test_data_show_without_labels_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["data", "show", "--root", str(tmp_path), "--out", str(tmp_path / "c.png")])
    assert code == 2
    assert capsys.readouterr().err.startswith("inktex: error: cannot read labels")
