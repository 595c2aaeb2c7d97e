"""Datasets in the CROHME layout: a TSV of LaTeX labels, and the expressions as pen strokes
(InkML, the source of truth) or as images.

`<root>/<split>.tsv` holds `<name>\\t<latex>` records (quoted where a label spans lines),
`<root>/inkml/<split>/<name>.inkml` the strokes and `<root>/<split>/<name>.png` one fixed
256x256 rendering of them. A user's own folder of InkML files or images with such a TSV works
the same. Bad records are counted, reported and skipped: one bad file never ends a run.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from inktex.errors import DataError, InkTeXError
from inktex.ink import InkMLDocument, read_inkml
from inktex.latex import normalize_latex

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SPLITS = ("train", "test2013", "test2014")


def data_root() -> Path:
    """The data folder: $INKTEX_DATA, else `../shared/data` beside the repository's root.

    Inside DVC's temporary experiment workspaces the repository root is $DVC_ROOT.
    """
    if "INKTEX_DATA" in os.environ:
        return Path(os.environ["INKTEX_DATA"])
    root = Path(os.environ.get("DVC_ROOT", REPO_ROOT))
    return root.parent / "shared" / "data"


def crohme_root() -> Path:
    return data_root() / "crohme"


@dataclass(frozen=True)
class Sample:
    name: str
    image_path: Path
    latex: str
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class InkSample:
    name: str
    ink: InkMLDocument
    latex: str
    tokens: tuple[str, ...]


@dataclass
class SkipReport:
    """What was skipped while reading a split, and why; and what was read around a defect."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    repaired: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, reason: str) -> None:
        log.warning("skipped %s: %s", name, reason)
        self.skipped.append((name, reason))

    def repair(self, name: str, what: str) -> None:
        log.info("read %s around a defect: %s", name, what)
        self.repaired.append((name, what))

    def summary(self) -> dict[str, dict[str, int]]:
        """How many records were skipped, and read around a defect, for each reason."""
        return {
            "skipped": dict(Counter(reason for _, reason in self.skipped)),
            "repaired": dict(Counter(what for _, what in self.repaired)),
        }


def read_labels(tsv: Path) -> list[tuple[str, str]]:
    """(name, raw LaTeX) records of a label TSV, honouring quoted multi-line labels."""
    try:
        with open(tsv, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read labels {tsv}: {exc}") from exc
    return [(r[0].strip(), r[1]) for r in rows if len(r) >= 2 and r[0].strip()]


def iter_split(
    root: Path, split: str, report: SkipReport | None = None, suffix: str = ".png"
) -> Iterator[Sample]:
    """Samples of `<root>/<split>.tsv` whose image exists and whose label normalises."""
    report = report if report is not None else SkipReport()
    for name, latex in read_labels(Path(root) / f"{split}.tsv"):
        image = Path(root) / split / f"{name}{suffix}"
        if not image.is_file():
            report.add(name, f"no image at {image}")
            continue
        try:
            tokens = normalize_latex(latex)
        except InkTeXError as exc:
            report.add(name, f"label does not normalise: {exc}")
            continue
        if not tokens:
            report.add(name, "empty label")
            continue
        yield Sample(name, image, latex, tuple(tokens))


def load_split(root: Path, split: str) -> tuple[list[Sample], SkipReport]:
    report = SkipReport()
    return list(iter_split(root, split, report)), report


def iter_inkml_split(
    root: Path, split: str, report: SkipReport | None = None
) -> Iterator[InkSample]:
    """The split's InkML files, each with its label from `<root>/<split>.tsv`.

    Every file in `<root>/inkml/<split>/` is read, so that one without a label (or one that
    cannot be read) is counted too, not only the labelled ones.
    """
    report = report if report is not None else SkipReport()
    labels = dict(read_labels(Path(root) / f"{split}.tsv"))
    folder = Path(root) / "inkml" / split
    found = {p.relative_to(folder).with_suffix("").as_posix(): p for p in folder.rglob("*.inkml")}
    for name in sorted(found.keys() | labels.keys()):
        if name not in found:
            report.add(name, "no InkML file for this label")
            continue
        try:
            ink = read_inkml(found[name])
        except InkTeXError as exc:
            report.add(name, str(exc))
            continue
        for what in ink.repairs:
            report.repair(name, what)
        if name not in labels:
            report.add(name, f"no label in {split}.tsv")
            continue
        try:
            tokens = normalize_latex(labels[name])
        except InkTeXError as exc:
            report.add(name, f"label does not normalise: {exc}")
            continue
        if not tokens:
            report.add(name, "empty label")
            continue
        yield InkSample(name, ink, labels[name], tuple(tokens))
