"""Checkpoint averaging: the mean of the weights a run held at its last few validations.

Near the end of a decaying schedule the weights still wander around the minimum; their mean
usually sits closer to it (a lever the field uses: BTTR and CoMER average their last epochs).
`python -m training.average A.pt B.pt ... --out averaged.pt` does it by hand; the trainer does it
itself at the end of a run when `train.average_last` is set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training.checkpoint import load_checkpoint, save_checkpoint


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean of each floating-point tensor; integer ones (BatchNorm's counters) from the last."""
    if not states:
        raise ValueError("nothing to average")
    if any(state.keys() != states[0].keys() for state in states):
        raise ValueError("the checkpoints hold different parameters")
    averaged = {}
    for name, last in states[-1].items():
        if last.is_floating_point():
            averaged[name] = torch.stack([state[name].float() for state in states]).mean(0)
        else:
            averaged[name] = last.clone()
    return averaged


def average_checkpoints(paths: list[Path]):
    """(model with the mean weights, vocabulary, preprocessing) of checkpoints of one model."""
    loaded = [load_checkpoint(path) for path in paths]
    model, vocab, pre, _ = loaded[-1]
    for path, (other, other_vocab, other_pre, _) in zip(paths, loaded, strict=True):
        if (other.cfg, other_vocab.tokens, other_pre) != (model.cfg, vocab.tokens, pre):
            raise ValueError(f"{path} was built with another architecture, vocabulary or input")
    model.load_state_dict(average_state_dicts([m.state_dict() for m, _, _, _ in loaded]))
    return model, vocab, pre


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    model, vocab, pre = average_checkpoints(args.checkpoints)
    save_checkpoint(
        args.out, model, vocab, pre, averaged_from=[str(path) for path in args.checkpoints]
    )
    print(f"averaged {len(args.checkpoints)} checkpoints into {args.out}")


if __name__ == "__main__":
    main()
