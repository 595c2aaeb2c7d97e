"""Prepare stage: the CROHME InkML corpus -> strokes at the one scale, packed in .npz.

Each expression's strokes are brought to the writer's scale (`inktex.scale`: a typical
symbol `prepare.symbol_height` pixels high) and thinned to points at least half a pixel
apart, which the renderer draws the same. Training renders (and augments) them on the fly;
packing once means it never parses XML again, and the packed corpus is small enough to
travel to a lent GPU. The report counts what was read, skipped and repaired per split, and
how many inputs are beyond the largest input size (those are shrunk to fit).
"""

from __future__ import annotations

import argparse
import json
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from inktex.data import SPLITS, InkSample, SkipReport, crohme_root, iter_inkml_split
from inktex.datastats import size_summary
from inktex.ink import Strokes
from inktex.preprocess import PreprocessConfig
from inktex.scale import normalise_strokes
from inktex.vocab import Vocabulary

log = logging.getLogger(__name__)
MIN_STEP = 0.5  # px between kept points: closer ones draw the same pixels


@dataclass
class PackedSplit:
    """Normalised strokes of many expressions in flat arrays (one .npz per split)."""

    points: np.ndarray  # (P, 2) float32, x y in pixels at the one scale
    stroke_ends: np.ndarray  # (S,) int64: where each stroke's points end in `points`
    sample_ends: np.ndarray  # (N,) int64: where each expression's strokes end
    stroke_symbol: np.ndarray  # (S,) int32: the stroke's symbol within its expression, -1 none
    names: list[str]
    labels: list[list[str]]

    def __len__(self) -> int:
        return len(self.names)

    def strokes(self, i: int) -> tuple[Strokes, np.ndarray]:
        """Expression i's strokes and each stroke's symbol index."""
        s0 = self.sample_ends[i - 1] if i else 0
        s1 = self.sample_ends[i]
        ends = self.stroke_ends[s0:s1]
        starts = np.r_[self.stroke_ends[s0 - 1] if s0 else 0, ends[:-1]]
        pts = self.points
        return [pts[a:b].astype(np.float64) for a, b in zip(starts, ends, strict=True)], (
            self.stroke_symbol[s0:s1]
        )

    def ink_sizes(self) -> np.ndarray:
        """(N, 2) height, width of each expression's ink at the one scale."""
        out = np.zeros((len(self), 2))
        starts = np.r_[0, self.stroke_ends[:-1]]
        point_starts = starts[np.r_[0, self.sample_ends[:-1]]]
        point_ends = self.stroke_ends[self.sample_ends - 1]
        for i, (a, b) in enumerate(zip(point_starts, point_ends, strict=True)):
            out[i] = np.ptp(self.points[a:b], axis=0)[::-1]
        return out

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            points=self.points,
            stroke_ends=self.stroke_ends,
            sample_ends=self.sample_ends,
            stroke_symbol=self.stroke_symbol,
            names=np.array(self.names),
            labels=np.array([" ".join(t) for t in self.labels]),
        )

    @classmethod
    def load(cls, path: Path) -> PackedSplit:
        with np.load(path) as z:
            return cls(
                points=z["points"],
                stroke_ends=z["stroke_ends"],
                sample_ends=z["sample_ends"],
                stroke_symbol=z["stroke_symbol"],
                names=z["names"].tolist(),
                labels=[s.split(" ") for s in z["labels"].tolist()],
            )


def thin(stroke: np.ndarray, step: float = MIN_STEP) -> np.ndarray:
    """The stroke's first and last points, and one point each time the pen has travelled
    another `step` along it: repeated and near-repeated samples go."""
    if len(stroke) < 3:
        return stroke
    travelled = np.r_[0, np.cumsum(np.linalg.norm(np.diff(stroke, axis=0), axis=1))]
    bucket = np.floor(travelled / step)
    keep = np.r_[True, bucket[1:] != bucket[:-1]]
    keep[-1] = True
    return stroke[keep]


def _normalised(args: tuple[InkSample, float]) -> tuple[list[np.ndarray], np.ndarray]:
    sample, symbol_height = args
    strokes = [thin(s) for s in normalise_strokes(sample.ink.strokes, symbol_height)]
    symbol = np.full(len(sample.ink.strokes), -1, dtype=np.int32)
    for k, sym in enumerate(sample.ink.symbols):
        symbol[list(sym.strokes)] = k
    return strokes, symbol


def pack_split(samples: list[InkSample], cfg: PreprocessConfig, workers: int = 2) -> PackedSplit:
    jobs = [(s, cfg.symbol_height) for s in samples]
    with ProcessPoolExecutor(workers) as pool:
        results = list(
            tqdm(pool.map(_normalised, jobs, chunksize=64), total=len(jobs), unit="expr")
        )
    strokes = [s for result, _ in results for s in result]
    return PackedSplit(
        points=np.concatenate(strokes).astype(np.float32)
        if strokes
        else np.zeros((0, 2), np.float32),
        stroke_ends=np.cumsum([len(s) for s in strokes], dtype=np.int64),
        sample_ends=np.cumsum([len(r) for r, _ in results], dtype=np.int64),
        stroke_symbol=np.concatenate([sym for _, sym in results]).astype(np.int32)
        if results
        else np.zeros(0, np.int32),
        names=[s.name for s in samples],
        labels=[list(s.tokens) for s in samples],
    )


# The writer's scale at half size: what tiny models (tests, the benchmark's stand-in) read.
TINY_INPUT = PreprocessConfig(symbol_height=12, height=192, width=1024, margin=4, line_width=1)


def tiny_corpus(dest: Path, splits=("train", "test2013")) -> Path:
    """The repository's five fixture InkML files laid out as a corpus, each split the same:
    what the tiny pipeline, the tests and the benchmark's stand-in model train on."""
    import shutil

    fixtures = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "inkml"
    for split in splits:
        (dest / "inkml" / split).mkdir(parents=True, exist_ok=True)
        for path in fixtures.glob("*.inkml"):
            shutil.copy(path, dest / "inkml" / split / path.name)
        shutil.copy(fixtures / "labels.tsv", dest / f"{split}.tsv")
    return dest


def prepare(root: Path, out_dir: Path, cfg: PreprocessConfig, splits=SPLITS, limit: int = 0):
    """Pack every split and build the vocabulary from the training labels."""
    report: dict[str, dict] = {}
    for split in splits:
        skips = SkipReport()
        samples = list(iter_inkml_split(root, split, skips))
        read = len(samples)
        if limit:
            samples = samples[:limit]
        packed = pack_split(samples, cfg)
        packed.save(out_dir / f"{split}.npz")
        report[split] = {"read": read, "packed": len(packed), **skips.summary()}
        report[split].update(size_summary(packed.ink_sizes(), cfg))
        if split == "train":
            Vocabulary.build(packed.labels).save(out_dir / "vocab.json")
    (out_dir / "preprocess.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", type=Path, default=None, help="CROHME folder (default: data)")
    parser.add_argument("--out", type=Path, default=Path("data/prepared"))
    parser.add_argument("--limit", type=int, default=None, help="samples per split (tests)")
    args = parser.parse_args(argv)
    params = yaml.safe_load(Path(args.params).read_text())["prepare"]
    cfg = PreprocessConfig.from_dict(params)
    if not cfg.at_scale:
        raise SystemExit("prepare.symbol_height must be set: training reads the strokes at scale")
    limit = args.limit if args.limit is not None else int(params.get("limit", 0))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    report = prepare(args.root or crohme_root(), args.out, cfg, limit=limit)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
