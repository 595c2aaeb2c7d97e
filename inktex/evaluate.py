"""Scoring recognitions against a label TSV, and the error report that explains the score.

Predictions come either from a predictions TSV (`<name>\\t<latex>`, quoted like the labels)
or from a `Recognizer` run over the labels' images. Both sides pass through
`normalize_latex`, so exact match means what it means everywhere else in InkTeX.

Nothing here ends a run over one bad record. A label that does not normalise is skipped;
a prediction that is missing, does not normalise or could not be recognised is scored as an
empty prediction (a model that wrote nothing). Each of these is listed in `problems`.

Outputs, written by the CLI: a flat metrics JSON (`Scores.to_dict()`, what `dvc metrics show`
reads) and a separate report, JSON or Markdown, built by `error_report`.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from inktex.data import read_labels
from inktex.errors import InkTeXError, InputError
from inktex.latex import normalize_latex, to_latex
from inktex.metrics import Scores, align, edit_distance, score

# Reference-length buckets (tokens) for ExpRate by length; None is open-ended.
LENGTH_BUCKETS: tuple[tuple[int, int | None], ...] = (
    (1, 10),
    (11, 20),
    (21, 30),
    (31, 40),
    (41, None),
)


class Recognizer(Protocol):
    """What evaluation needs of a model: canonical token lists for image files, in order.

    It may raise an InkTeXError for a batch; each image is then retried alone, and one that
    still fails is scored as wrong and reported.
    """

    def recognize_paths(self, paths: list[Path]) -> list[list[str]]: ...


@dataclass(frozen=True)
class Problem:
    """A record that was skipped (a label) or scored as empty (a prediction), and why."""

    name: str
    kind: str
    detail: str


@dataclass(frozen=True)
class Case:
    name: str
    reference: list[str]
    prediction: list[str]
    distance: int


@dataclass
class Evaluation:
    scores: Scores
    cases: list[Case]
    problems: list[Problem] = field(default_factory=list)


def load_references(labels: Path) -> tuple[list[tuple[str, list[str]]], list[Problem]]:
    """(name, tokens) of every label that normalises to a non-empty sequence."""
    refs: list[tuple[str, list[str]]] = []
    problems: list[Problem] = []
    for name, latex in read_labels(labels):
        try:
            tokens = normalize_latex(latex)
        except InkTeXError as exc:
            problems.append(Problem(name, "label skipped", f"does not normalise: {exc}"))
            continue
        if not tokens:
            problems.append(Problem(name, "label skipped", "empty label"))
            continue
        refs.append((name, tokens))
    return refs, problems


def normalize_prediction(name: str, latex: str) -> tuple[list[str], Problem | None]:
    """Tokens of a predicted LaTeX string; one that does not normalise becomes empty."""
    try:
        return normalize_latex(latex), None
    except InkTeXError as exc:
        return [], Problem(name, "prediction does not normalise", f"{exc}: {latex!r}")


def load_predictions(path: Path) -> tuple[dict[str, list[str]], list[Problem]]:
    """Normalised predictions by name from a predictions TSV; the last of duplicates wins."""
    predictions: dict[str, list[str]] = {}
    problems: list[Problem] = []
    for name, latex in read_labels(path):
        if name in predictions:
            problems.append(Problem(name, "duplicate prediction", "kept the last one"))
        tokens, problem = normalize_prediction(name, latex)
        predictions[name] = tokens
        if problem:
            problems.append(problem)
    return predictions, problems


def write_predictions(path: Path, predictions: dict[str, list[str]]) -> None:
    """A predictions TSV that `load_predictions` reads back to the same tokens."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        for name, tokens in predictions.items():
            writer.writerow([name, to_latex(tokens)])


# What an expression's input may be, in the order looked for: the pen strokes (the source of
# truth), then an image of them.
INPUT_SUFFIXES = (".inkml", ".png", ".jpg", ".jpeg", ".webp", ".bmp")


def find_input(folder: Path, name: str) -> Path | None:
    """`<folder>/<name>.inkml`, else an image of that name, else None."""
    for suffix in INPUT_SUFFIXES:
        path = Path(folder) / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def recognize_all(
    recognizer: Recognizer,
    names: Sequence[str],
    images: Path,
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[dict[str, list[str]], list[Problem]]:
    """Normalised predictions for each name's input in `images` (`find_input`), with a
    progress bar."""
    predictions: dict[str, list[str]] = {}
    problems: list[Problem] = []
    with tqdm(total=len(names), unit="image", desc="recognising", disable=not progress) as bar:
        for start in range(0, len(names), batch_size):
            batch = []
            for name in names[start : start + batch_size]:
                path = find_input(images, name)
                if path is not None:
                    batch.append((name, path))
                else:
                    problems.append(
                        Problem(
                            name, "recognition failed", f"no .inkml or image for it in {images}"
                        )
                    )
            for name, result in _recognize_batch(recognizer, batch):
                if isinstance(result, str):
                    problems.append(Problem(name, "recognition failed", result))
                    continue
                # The model's tokens go through the normaliser like any prediction would.
                tokens, problem = normalize_prediction(name, to_latex(result))
                predictions[name] = tokens
                if problem:
                    problems.append(problem)
            bar.update(min(batch_size, len(names) - start))
    return predictions, problems


def _recognize_batch(
    recognizer: Recognizer, batch: list[tuple[str, Path]]
) -> list[tuple[str, list[str] | str]]:
    """(name, tokens) per image, or (name, error message) where that image failed alone."""
    if not batch:
        return []
    try:
        results = recognizer.recognize_paths([p for _, p in batch])
    except InkTeXError as exc:
        if len(batch) == 1:
            return [(batch[0][0], f"{type(exc).__name__}: {exc}")]
        # One bad image fails its whole batch: retry alone to find it.
        return [r for item in batch for r in _recognize_batch(recognizer, [item])]
    if len(results) != len(batch):
        raise RuntimeError(
            f"the recogniser returned {len(results)} results for {len(batch)} images"
        )
    return [(name, list(tokens)) for (name, _), tokens in zip(batch, results, strict=True)]


def evaluate(
    references: Sequence[tuple[str, list[str]]],
    predictions: dict[str, list[str]],
    problems: Iterable[Problem] = (),
) -> Evaluation:
    """Score every reference; a name without a prediction is scored as an empty prediction."""
    if not references:
        raise InputError("no usable labels to evaluate against: check the labels TSV")
    problems = list(problems)
    failed = {p.name for p in problems if p.kind == "recognition failed"}
    cases = []
    for name, ref in references:
        if name not in predictions and name not in failed:
            problems.append(Problem(name, "prediction missing", "scored as an empty prediction"))
        hyp = predictions.get(name, [])
        cases.append(Case(name, ref, hyp, edit_distance(ref, hyp)))
    labelled = {name for name, _ in references}
    for name in predictions:
        if name not in labelled:
            problems.append(Problem(name, "prediction without label", "not scored"))
    scores = score((c.reference, c.prediction) for c in cases)
    return Evaluation(scores, cases, problems)


def error_report(evaluation: Evaluation, worst: int = 20, top: int = 30) -> dict:
    """Where the errors are: worst cases, token confusions, ExpRate by length, problems."""
    substitutions: Counter[tuple[str, str]] = Counter()
    deletions: Counter[str] = Counter()
    insertions: Counter[str] = Counter()
    for case in evaluation.cases:
        if case.distance == 0:
            continue
        for ref, hyp in align(case.reference, case.prediction):
            if ref is not None and hyp is not None:
                if ref != hyp:
                    substitutions[ref, hyp] += 1
            elif ref is not None:
                deletions[ref] += 1
            elif hyp is not None:
                insertions[hyp] += 1
    wrong = sorted((c for c in evaluation.cases if c.distance), key=lambda c: (-c.distance, c.name))
    return {
        "metrics": evaluation.scores.to_dict(),
        "by_length": _by_length(evaluation.cases),
        "worst": [
            {
                "name": c.name,
                "distance": c.distance,
                "reference": to_latex(c.reference),
                "prediction": to_latex(c.prediction),
            }
            for c in wrong[:worst]
        ],
        "substitutions": [
            {"reference": r, "prediction": h, "count": n}
            for (r, h), n in substitutions.most_common(top)
        ],
        "deletions": [{"token": t, "count": n} for t, n in deletions.most_common(top)],
        "insertions": [{"token": t, "count": n} for t, n in insertions.most_common(top)],
        "problems": {
            "count": len(evaluation.problems),
            "by_kind": dict(Counter(p.kind for p in evaluation.problems)),
            "items": [asdict(p) for p in evaluation.problems],
        },
    }


def _by_length(cases: Sequence[Case]) -> list[dict]:
    rows = []
    for low, high in LENGTH_BUCKETS:
        inside = [
            c
            for c in cases
            if low <= len(c.reference) and (high is None or len(c.reference) <= high)
        ]
        exact = sum(c.distance == 0 for c in inside)
        rows.append(
            {
                "tokens": f"{low}-{high}" if high is not None else f"{low}+",
                "count": len(inside),
                "exprate": round(100 * exact / len(inside), 4) if inside else None,
            }
        )
    return rows


def report_markdown(report: dict) -> str:
    """The error report as Markdown tables, for reading in a PR or a terminal."""
    m = report["metrics"]
    lines = [
        "# Evaluation report",
        "",
        f"{m['count']} expressions: ExpRate {m['exprate']:.2f}%, <=1 {m['le1']:.2f}%, "
        f"<=2 {m['le2']:.2f}%, token accuracy {m['token_accuracy']:.2f}%, "
        f"BLEU-4 {m['bleu']:.2f}, mean edit distance {m['mean_edit_distance']:.3f}.",
        "",
        "## ExpRate by reference length",
        "",
        *_table(
            ["tokens", "count", "ExpRate %"],
            [
                [r["tokens"], r["count"], "-" if r["exprate"] is None else f"{r['exprate']:.2f}"]
                for r in report["by_length"]
            ],
        ),
        "## Worst cases",
        "",
        *_table(
            ["name", "distance", "reference", "prediction"],
            [
                [w["name"], w["distance"], _code(w["reference"]), _code(w["prediction"])]
                for w in report["worst"]
            ],
        ),
        "## Most frequent substitutions",
        "",
        *_table(
            ["reference", "prediction", "count"],
            [
                [_code(s["reference"]), _code(s["prediction"]), s["count"]]
                for s in report["substitutions"]
            ],
        ),
        "## Most frequently deleted tokens",
        "",
        *_table(
            ["deleted", "count"], [[_code(d["token"]), d["count"]] for d in report["deletions"]]
        ),
        "## Most frequently inserted tokens",
        "",
        *_table(
            ["inserted", "count"], [[_code(d["token"]), d["count"]] for d in report["insertions"]]
        ),
        "## Problems",
        "",
        *_table(
            ["name", "kind", "detail"],
            [[p["name"], p["kind"], p["detail"]] for p in report["problems"]["items"]],
        ),
    ]
    return "\n".join(lines)


def _code(text: str) -> str:
    return f"`{text}`" if text else "(empty)"


def _table(header: list[str], rows: list[list]) -> list[str]:
    if not rows:
        return ["(none)", ""]

    def cells(values: list) -> str:
        # A literal `|` (a LaTeX token) would end the cell, even inside a code span.
        return (
            "| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in values) + " |"
        )

    return [cells(header), "|" + " --- |" * len(header), *(cells(r) for r in rows), ""]


def write_metrics(path: Path, scores: Scores) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(scores.to_dict(), indent=2) + "\n", encoding="utf-8")


def write_report(path: Path, report: dict) -> None:
    """The report as Markdown for a `.md` path, else as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".md":
        path.write_text(report_markdown(report) + "\n", encoding="utf-8")
    else:
        path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
