"""Evaluation against real CROHME labels: the library functions and the `inktex evaluate` CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from inktex import evaluate as ev
from inktex.cli import main
from inktex.errors import ImageError
from inktex.latex import normalize_latex, to_latex

REPO = Path(__file__).resolve().parents[2]


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, delimiter="\t", lineterminator="\n").writerows(rows)
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def edited_predictions(fixtures: Path, tmp_path: Path) -> Path:
    """Hand-made edits of the 10 fixture labels, one per line of the expectations below."""
    refs = dict(ev.load_references(fixtures / "labels_small.tsv")[0])
    rows = []
    for name, tokens in refs.items():
        if name == "RIT_2014_27":
            tokens = [*tokens, "1"]  # distance 1 (insertion)
        elif name == "RIT_2014_306":
            tokens = [*tokens[:-1], "y"]  # distance 1 (v -> y)
        elif name == "37_em_31":
            tokens = [*tokens, "+", "1"]  # distance 2
        elif name == "510_em_107":
            tokens = [*tokens, "+", "1", "1"]  # distance 3
        elif name == "518_em_431":
            continue  # missing: scored as empty, distance 14
        elif name == "RIT_2014_35":
            rows.append((name, r"\frac{"))  # does not normalise: empty, distance 3
            continue
        rows.append((name, to_latex(tokens)))
    rows.append(("not_a_label", "x"))
    return write_tsv(tmp_path / "predictions.tsv", rows)


def test_fixture_labels_all_normalise(fixtures: Path) -> None:
    refs, problems = ev.load_references(fixtures / "labels_small.tsv")
    assert len(refs) == 10 and problems == []


def test_predictions_equal_to_labels_score_100(
    fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = str(fixtures / "labels_small.tsv")
    metrics, report = tmp_path / "out" / "metrics.json", tmp_path / "out" / "report.json"
    code, out, _ = run_cli(
        capsys, "evaluate", "--labels", labels, "--predictions", labels,
        "--metrics", str(metrics), "--report", str(report),
    )  # fmt: skip
    assert code == 0
    m = json.loads(metrics.read_text())
    assert m == {
        "exprate": 100.0, "le1": 100.0, "le2": 100.0, "token_accuracy": 100.0, "wer": 0.0,
        "bleu": 100.0, "mean_edit_distance": 0.0, "count": 10,
    }  # fmt: skip
    assert "exprate" in out and "problems" not in out
    r = json.loads(report.read_text())
    assert r["worst"] == [] and r["substitutions"] == [] and r["problems"]["count"] == 0
    assert sum(b["count"] for b in r["by_length"]) == 10


def test_hand_made_edits_give_exact_rates(
    fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    predictions = edited_predictions(fixtures, tmp_path)
    metrics, report = tmp_path / "metrics.json", tmp_path / "report.json"
    code, out, _ = run_cli(
        capsys, "evaluate", "--labels", str(fixtures / "labels_small.tsv"),
        "--predictions", str(predictions), "--metrics", str(metrics), "--report", str(report),
    )  # fmt: skip
    assert code == 0
    m = json.loads(metrics.read_text())
    # Distances 0 x4, 1 x2, 2, 3, 3 (unparsable), 14 (missing).
    assert (m["exprate"], m["le1"], m["le2"], m["count"]) == (40.0, 60.0, 70.0, 10)
    assert m["mean_edit_distance"] == pytest.approx((1 + 1 + 2 + 3 + 3 + 14) / 10)
    r = json.loads(report.read_text())
    assert r["worst"][0] == {
        "name": "518_em_431",
        "distance": 14,
        "reference": "a x - b y = 5 t + b y - b y",
        "prediction": "",
    }
    assert [w["name"] for w in r["worst"]][:3] == ["518_em_431", "510_em_107", "RIT_2014_35"]
    assert r["substitutions"] == [{"reference": "v", "prediction": "y", "count": 1}]
    assert {"token": "1", "count": 4} in r["insertions"]
    assert {"token": "+", "count": 2} in r["insertions"]
    assert r["problems"]["by_kind"] == {
        "prediction does not normalise": 1,
        "prediction missing": 1,
        "prediction without label": 1,
    }
    assert "problems: " in out


def test_markdown_report(
    fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    predictions = edited_predictions(fixtures, tmp_path)
    report = tmp_path / "report.md"
    labels = str(fixtures / "labels_small.tsv")
    assert run_cli(capsys, "evaluate", "--labels", labels, "--predictions", str(predictions),
                   "--report", str(report))[0] == 0  # fmt: skip
    text = report.read_text()
    assert text.startswith("# Evaluation report")
    assert "| 518_em_431 | 14 | `a x - b y = 5 t + b y - b y` | (empty) |" in text
    assert "| `v` | `y` | 1 |" in text


def test_markdown_escapes_pipes_in_tables() -> None:
    evaluation = ev.evaluate([("a", ["|", "x", "|"])], {"a": ["|", "y", "|"]})
    text = ev.report_markdown(ev.error_report(evaluation))
    assert "| a | 1 | `\\| x \\|` | `\\| y \\|` |" in text


def test_full_test2014(crohme: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = crohme / "test2014.tsv"
    metrics = tmp_path / "metrics.json"
    code, _, _ = run_cli(capsys, "evaluate", "--labels", str(labels), "--predictions",
                         str(labels), "--metrics", str(metrics))  # fmt: skip
    assert code == 0
    m = json.loads(metrics.read_text())
    assert (m["exprate"], m["le1"], m["le2"], m["bleu"], m["count"]) == (100, 100, 100, 100, 986)

    # Every 10th prediction gains one token: 99 of 986 are off by exactly 1.
    refs, _ = ev.load_references(labels)
    rows = [(n, to_latex([*t, "1"] if i % 10 == 0 else t)) for i, (n, t) in enumerate(refs)]
    predictions = write_tsv(tmp_path / "predictions.tsv", rows)
    code, _, _ = run_cli(capsys, "evaluate", "--labels", str(labels), "--predictions",
                         str(predictions), "--metrics", str(metrics))  # fmt: skip
    m = json.loads(metrics.read_text())
    assert m["exprate"] == round(100 * 887 / 986, 4)
    assert (m["le1"], m["le2"]) == (100.0, 100.0)


def test_labels_that_do_not_normalise_are_skipped_and_reported(tmp_path: Path) -> None:
    labels = write_tsv(tmp_path / "l.tsv", [("a", "x^2"), ("b", r"\frac{1"), ("c", " ")])
    refs, problems = ev.load_references(labels)
    assert refs == [("a", ["x", "^", "{", "2", "}"])]
    assert [(p.name, p.kind) for p in problems] == [("b", "label skipped"), ("c", "label skipped")]


def test_predictions_round_trip(tmp_path: Path) -> None:
    predictions = {"a": normalize_latex(r"\frac12"), "b": [], "c": ["|", "x", "|"]}
    ev.write_predictions(tmp_path / "p.tsv", predictions)
    assert ev.load_predictions(tmp_path / "p.tsv") == (predictions, [])


class FakeRecognizer:
    """Answers from a name -> tokens table; one image fails, failing its whole batch."""

    def __init__(self, answers: dict[str, list[str]], bad: str | None = None):
        self.answers, self.bad, self.calls = answers, bad, []

    def recognize_paths(self, paths: list[Path]) -> list[list[str]]:
        self.calls.append(len(paths))
        if any(p.stem == self.bad for p in paths):
            raise ImageError("not a readable image")
        return [self.answers[p.stem] for p in paths]


def test_recognize_all_isolates_a_failing_image(tmp_path: Path) -> None:
    for name in "abcd":
        (tmp_path / f"{name}.png").write_bytes(b"")
    answers = {"a": ["x"], "b": ["y"], "c": ["z"], "d": ["{"]}
    rec = FakeRecognizer(answers, bad="b")
    predictions, problems = ev.recognize_all(
        rec, ["a", "b", "c", "d", "e"], tmp_path, batch_size=3, progress=False
    )
    # Batch a,b,c fails and is retried one by one; d,e runs as one call without e's image.
    assert rec.calls == [3, 1, 1, 1, 1]
    assert predictions == {"a": ["x"], "c": ["z"], "d": []}
    assert [(p.name, p.kind) for p in problems] == [
        ("b", "recognition failed"),
        ("e", "recognition failed"),
        ("d", "prediction does not normalise"),
    ]
    evaluation = ev.evaluate([(n, ["x"]) for n in "abcde"], predictions, problems)
    assert evaluation.scores.exprate == 0.2
    assert not any(p.kind == "prediction missing" for p in evaluation.problems)


def test_cli_model_path(
    crohme: Path,
    fixtures: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    labels = fixtures / "labels_small.tsv"
    answers = dict(ev.load_references(labels)[0])
    runtime = types.ModuleType("inktex.runtime")
    runtime.load_recognizer = lambda path: FakeRecognizer(answers, bad="RIT_2014_35")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "inktex.runtime", runtime)
    saved = tmp_path / "predictions.tsv"
    code, out, _ = run_cli(
        capsys, "evaluate", "--labels", str(labels), "--images", str(crohme / "test2014"),
        "--model", "some.model", "--save-predictions", str(saved),
    )  # fmt: skip
    assert code == 0
    assert "exprate             90.0" in out and "1 recognition failed" in out
    assert len(ev.load_predictions(saved)[0]) == 9


def test_cli_model_without_runtime_is_a_user_error(
    fixtures: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "inktex.runtime", None)
    labels = str(fixtures / "labels_small.tsv")
    code, _, err = run_cli(capsys, "evaluate", "--labels", labels, "--images", str(fixtures),
                           "--model", "m")  # fmt: skip
    assert code == 2
    assert err.startswith("inktex: error: ") and err.count("\n") == 1


def test_cli_missing_labels_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nope.tsv")
    code, _, err = run_cli(capsys, "evaluate", "--labels", missing, "--predictions", missing)
    assert code == 2
    assert err.startswith("inktex: error: cannot read labels") and "Traceback" not in err


def test_cli_subprocess(fixtures: Path, tmp_path: Path) -> None:
    labels = str(fixtures / "labels_small.tsv")
    cmd = [sys.executable, "-m", "inktex.cli", "evaluate", "--labels", labels]
    ok = subprocess.run([*cmd, "--predictions", labels], capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    assert "exprate             100.0" in ok.stdout
    bad = subprocess.run(
        [*cmd, "--predictions", str(tmp_path / "nope.tsv")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("inktex: error: ") and "Traceback" not in bad.stderr
