"""Score a PyTorch checkpoint on prepared splits: `python -m training.score_checkpoint CKPT`.

For a training machine (a lent GPU) where the ONNX runtime path is not at hand; the
pipeline's evaluate stage scores the exported package through the serving runtime instead.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from inktex.metrics import score
from training.checkpoint import load_checkpoint
from training.data import ExpressionDataset, load_split, render_all
from training.decoding import recognize_arrays


def score_checkpoint(
    checkpoint: Path, data_dir: Path, splits: list[str], beams: list[int], device: torch.device
) -> dict:
    model, vocab, pre, _ = load_checkpoint(checkpoint, device)
    results = {}
    for split in splits:
        packed = load_split(data_dir / f"{split}.npz")
        images, labels = render_all(ExpressionDataset(packed, pre)), packed.labels
        for beam in beams:
            started = time.monotonic()
            predictions = recognize_arrays(model, images, vocab, device, beam=beam)
            scores = score(zip(labels, predictions, strict=True)).to_dict()
            scores["seconds"] = round(time.monotonic() - started, 1)
            results[f"{split}/beam{beam}"] = scores
            print(split, f"beam {beam}:", json.dumps(scores), flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--splits", nargs="+", default=["test2013", "test2014"])
    parser.add_argument("--beams", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = score_checkpoint(args.checkpoint, args.data, args.splits, args.beams, device)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
