"""Self-describing checkpoints: the weights travel with the config, vocabulary and preprocessing
that built them, so loading never guesses."""

from __future__ import annotations

from pathlib import Path

import torch

from inktex.preprocess import PreprocessConfig
from inktex.vocab import Vocabulary
from training.model import ModelConfig, Recognizer

FORMAT = "inktex-checkpoint/1"


def save_checkpoint(
    path: Path,
    model: Recognizer,
    vocab: Vocabulary,
    pre: PreprocessConfig,
    half: bool = False,
    **extra,
) -> None:
    """Write atomically (a crash mid-write never leaves a broken checkpoint behind)."""
    state = model.state_dict()
    if half:  # fp16 weights: half the size, for committing; BatchNorm counters stay ints
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "model_config": model.cfg.to_dict(),
        "vocab": vocab.tokens,
        "preprocess": pre.to_dict(),
        "state_dict": state,
        **extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu"):
    """(model in eval mode with float32 weights, vocabulary, preprocessing, the raw payload)."""
    payload = torch.load(path, map_location=map_location, weights_only=False)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an InkTeX checkpoint ({payload.get('format')!r})")
    model = Recognizer(ModelConfig.from_dict(payload["model_config"]))
    model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    )
    model.to(map_location).eval()
    return (
        model,
        Vocabulary(payload["vocab"]),
        PreprocessConfig.from_dict(payload["preprocess"]),
        payload,
    )
