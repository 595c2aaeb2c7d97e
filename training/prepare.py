"""Prepare stage: CROHME images -> fitted uint8 model inputs and token labels, packed in .npz.

Packing once means training (on this machine or a lent GPU) never decodes a PNG again, and
the packed splits are small enough to travel. The images go through the serving pipeline's
own `preprocess_bytes`, so what the model trains on is what it will be served.
"""

from __future__ import annotations

import argparse
import json
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from inktex.data import SPLITS, Sample, crohme_root, load_split
from inktex.errors import InkTeXError
from inktex.preprocess import PreprocessConfig, preprocess_bytes, to_uint8
from inktex.vocab import Vocabulary

log = logging.getLogger(__name__)


def _prepare_one(args: tuple[Path, PreprocessConfig]) -> np.ndarray | str:
    path, cfg = args
    try:
        return to_uint8(preprocess_bytes(path.read_bytes(), cfg))
    except (InkTeXError, OSError) as exc:
        return str(exc)


def pack_split(
    samples: list[Sample], cfg: PreprocessConfig, out: Path, workers: int = 2
) -> dict[str, int]:
    """Write `out` (.npz: images (N, H, W) uint8, names, labels) and return counts."""
    jobs = [(s.image_path, cfg) for s in samples]
    with ProcessPoolExecutor(workers) as pool:
        results = list(
            tqdm(
                pool.map(_prepare_one, jobs, chunksize=64),
                total=len(jobs),
                desc=out.stem,
                unit="img",
            )
        )
    images, names, labels, skipped = [], [], [], 0
    for sample, result in zip(samples, results, strict=True):
        if isinstance(result, str):
            log.warning("skipped %s: %s", sample.name, result)
            skipped += 1
            continue
        images.append(result)
        names.append(sample.name)
        labels.append(" ".join(sample.tokens))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        images=np.stack(images) if images else np.zeros((0, cfg.height, cfg.width), np.uint8),
        names=np.array(names),
        labels=np.array(labels),
    )
    return {"samples": len(images), "skipped": skipped}


def load_packed(path: Path) -> tuple[np.ndarray, list[str], list[list[str]]]:
    """(images, names, token lists) of a packed split."""
    with np.load(path) as z:
        return z["images"], z["names"].tolist(), [s.split(" ") for s in z["labels"].tolist()]


def prepare(root: Path, out_dir: Path, cfg: PreprocessConfig, splits=SPLITS, limit: int = 0):
    """Pack every split and build the vocabulary from the training labels."""
    report: dict[str, dict] = {}
    train_labels = None
    for split in splits:
        samples, skips = load_split(root, split)
        if limit:
            samples = samples[:limit]
        counts = pack_split(samples, cfg, out_dir / f"{split}.npz")
        counts["skipped"] += len(skips.skipped)
        report[split] = counts
        if split == "train":
            train_labels = [s.tokens for s in samples]
    if train_labels is not None:
        Vocabulary.build(train_labels).save(out_dir / "vocab.json")
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
    limit = args.limit if args.limit is not None else int(params.get("limit", 0))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    report = prepare(args.root or crohme_root(), args.out, cfg, limit=limit)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
