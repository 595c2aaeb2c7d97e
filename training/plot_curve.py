"""The training curve as a picture: `python -m training.plot_curve RUN... --out curve.png`.

Each RUN is a dvclive folder (`runs/<name>/dvclive`). Runs that continue one another (each
trained from the previous release, which is its run's best validation) are drawn end to end:
a run's steps start at the previous run's best step, and a dotted line marks where it began.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

SERIES = {"exprate": "ExpRate", "le1": "≤1 error", "le2": "≤2 errors"}


@dataclass(frozen=True)
class Curve:
    label: str
    start: int  # the step the run began at, on the chained axis
    points: dict[str, list[tuple[int, float]]]  # series -> (chained step, value)


def read_series(dvclive: Path, name: str) -> list[tuple[int, float]]:
    """(step, value) of one validation metric, as dvclive wrote it (a TSV per metric)."""
    path = Path(dvclive) / "plots" / "metrics" / "val" / f"{name}.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a dvclive folder with validation metrics")
    with path.open(newline="") as handle:
        return [
            (int(float(row["step"])), float(row[name]))
            for row in csv.DictReader(handle, delimiter="\t")
        ]


def chain(runs: list[tuple[str, Path]]) -> list[Curve]:
    """The runs end to end: each one starts at the step of the previous one's best ExpRate."""
    curves, offset = [], 0
    for label, dvclive in runs:
        series = {name: read_series(dvclive, name) for name in SERIES}
        points = {name: [(offset + s, v) for s, v in values] for name, values in series.items()}
        curves.append(Curve(label, offset, points))
        if points["exprate"]:
            offset = max(points["exprate"], key=lambda point: point[1])[0]
    return curves


def plot(curves: list[Curve], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    colors = {"exprate": "tab:blue", "le1": "tab:orange", "le2": "tab:green"}
    # One segment per run; a run's steps after the next run began (the tail the next run did
    # not continue from) are drawn faded.
    for index, curve in enumerate(curves):
        next_start = curves[index + 1].start if index + 1 < len(curves) else None
        for name, label in SERIES.items():
            kept = [p for p in curve.points[name] if next_start is None or p[0] <= next_start]
            tail = [p for p in curve.points[name] if next_start is not None and p[0] >= next_start]
            style = {"marker": "o", "markersize": 3, "color": colors[name]}
            if kept:
                ax.plot(*zip(*kept, strict=True), label=label if index == 0 else None, **style)
            if tail:
                ax.plot(*zip(*tail, strict=True), alpha=0.25, **style)
    top = max((v for c in curves for v in (p[1] for p in c.points["le2"])), default=1.0)
    for index, curve in enumerate(curves):
        ax.axvline(curve.start, color="grey", linestyle=":", linewidth=1)
        ax.annotate(
            curve.label,
            (curve.start, top),
            xytext=(4, 4 - 11 * (index % 2)),  # alternate heights: early runs start close
            textcoords="offset points",
            fontsize=8,
            color="dimgrey",
        )
    ax.set_xlabel("training steps")  # a batch is what the run's preset packs under its pixel budget
    ax.set_ylabel("CROHME 2013 validation, greedy (%)")
    ax.set_title(title)
    ax.set_ylim(0, max(top * 1.15, 1.0))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", metavar="LABEL=DVCLIVE_DIR")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="InkTeX release model: validation during training")
    args = parser.parse_args(argv)
    runs = []
    for item in args.runs:
        label, sep, folder = item.partition("=")
        if not sep:
            parser.error(f"{item!r}: expected LABEL=DVCLIVE_DIR")
        runs.append((label, Path(folder)))
    plot(chain(runs), args.title, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
