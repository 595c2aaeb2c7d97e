"""The pipeline's two packaging steps, so that `dvc repro` rebuilds the bundled model exactly.

    python -m model_export.release candidate runs/train/best.pt models/candidate
    python -m model_export.release ship models/candidate models/release \
        --metrics crohme2013=metrics/test2013.json --metrics crohme2014=metrics/test2014.json

`candidate` rounds the trained weights to fp16 first and ships that fp16 checkpoint beside the
package (`checkpoint.pt`): what is evaluated is what is committed, and training resumes from it.
It fits the scale images are read at (`model_export.image_scale`) into that checkpoint's
preprocessing, and calibrates the confidences (`model_export.calibrate`).
`ship` re-exports the candidate's own fp16 checkpoint with the evaluation's metrics. The export
is deterministic and the version a content hash, so the shipped package is the evaluated one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import tempfile
from pathlib import Path

from inktex.package import TEMPERATURE, ModelPackage
from model_export.calibrate import calibrate, set_temperature
from model_export.export import export_package, load_samples
from model_export.image_scale import fit_image_scale
from training.checkpoint import load_checkpoint, save_checkpoint

CHECKPOINT = "checkpoint.pt"


def write_half(checkpoint: Path, out: Path, image_scale: float | None = None) -> None:
    """The checkpoint's weights as fp16, keeping its config, vocabulary and training record
    (and its preprocessing, with `image_scale` when given)."""
    model, vocab, pre, payload = load_checkpoint(checkpoint)
    if image_scale is not None:
        pre = dataclasses.replace(pre, image_scale=image_scale)
    kept = {k: payload[k] for k in ("metrics", "train_config", "init") if k in payload}
    save_checkpoint(out, model, vocab, pre, half=True, **kept)


def export_with_checkpoint(
    checkpoint: Path, out_dir: Path, samples: Path, metrics: dict | None = None
) -> str:
    package = export_package(checkpoint, out_dir, load_samples(samples, 16), metrics)
    shutil.copyfile(checkpoint, out_dir / CHECKPOINT)
    return package.version


def candidate(checkpoint: Path, out_dir: Path, samples: Path) -> str:
    """The verified package, its image scale fitted and its confidences calibrated on CROHME
    2013 (`samples`' split)."""
    with tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp) / CHECKPOINT
        write_half(checkpoint, half)
        version = export_with_checkpoint(half, out_dir, samples)
        scale = fit_image_scale(out_dir, samples)["image_scale"]
        if scale != ModelPackage.load(out_dir).preprocess.image_scale:
            # The scale is part of the preprocessing, so of the version: export again with it.
            write_half(checkpoint, half, scale)
            version = export_with_checkpoint(half, out_dir, samples)
    calibrate(out_dir, samples)
    return version


def ship(candidate_dir: Path, out_dir: Path, samples: Path, metrics: dict) -> str:
    settings = json.loads((candidate_dir / "model.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:  # out_dir may be replaced while we read
        half = Path(tmp) / CHECKPOINT
        shutil.copyfile(candidate_dir / CHECKPOINT, half)
        version = export_with_checkpoint(half, out_dir, samples, metrics)
    if TEMPERATURE in settings:  # the candidate's calibration, not fitted again
        set_temperature(out_dir, settings[TEMPERATURE])
    expected = json.loads((candidate_dir / "manifest.json").read_text())["version"]
    if version != expected:  # never ship a package other than the one evaluated
        raise RuntimeError(f"re-export gave version {version}, the candidate is {expected}")
    return version


def named_metrics(pairs: list[str]) -> dict:
    """{'crohme2013': {...}} from ['crohme2013=metrics/test2013.json', ...]."""
    metrics = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep:
            raise SystemExit(f"--metrics wants NAME=FILE, got {pair!r}")
        metrics[name] = json.loads(Path(path).read_text())
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    steps = parser.add_subparsers(dest="step", required=True)
    make = steps.add_parser("candidate", help="fp16 weights -> verified package + checkpoint")
    make.add_argument("checkpoint", type=Path)
    make.add_argument("out", type=Path)
    release = steps.add_parser("ship", help="the evaluated candidate, with its metrics")
    release.add_argument("candidate", type=Path)
    release.add_argument("out", type=Path)
    release.add_argument("--metrics", action="append", default=[], metavar="NAME=FILE")
    for step in (make, release):
        step.add_argument("--samples", type=Path, default=Path("data/prepared"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.step == "candidate":
        version = candidate(args.checkpoint, args.out, args.samples)
    else:
        version = ship(args.candidate, args.out, args.samples, named_metrics(args.metrics))
    print(f"{args.step}: {version} in {args.out}")


if __name__ == "__main__":
    main()
