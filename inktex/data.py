"""Datasets in the CROHME offline layout: a folder of PNG images and a TSV of LaTeX labels.

`<root>/<split>.tsv` holds `<name>\\t<latex>` records (quoted where a label spans lines) and
`<root>/<split>/<name>.png` the images. A user's own folder of images with such a TSV works
the same. Bad records are counted, reported and skipped: one bad file never ends a run.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from inktex.errors import DataError, InkTeXError
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


@dataclass
class SkipReport:
    """What was skipped while reading a split, and why."""

    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, reason: str) -> None:
        log.warning("skipped %s: %s", name, reason)
        self.skipped.append((name, reason))


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
