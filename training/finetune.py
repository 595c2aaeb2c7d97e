"""Fine-tune a checkpoint on a feedback batch: the training half of the retraining job.

The job itself (model_export/finetune_job.py, SageMaker's `sagemaker_program`) calls
`finetune`, then exports and registers what it wrote; this module neither exports nor
talks to AWS, so the dependency runs one way: model_export -> training. It reads:
- a claimed feedback batch, `feedback/batches/<n>/` (manifest.json, items/<id>.json with the
  corrected tokens, inputs/<id>.<ext> as the user sent them);
- a replay set in the CROHME layout (labels.tsv, images/<name>.png), sampled so the model
  does not forget what it knew;
- the base checkpoint, model.pt;
and writes the fine-tuned checkpoint. Only the batch's "train" split is trained on;
"heldout" is for promotion.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inktex import inputs
from inktex.errors import InkTeXError
from inktex.latex import normalize_latex
from inktex.preprocess import to_uint8

log = logging.getLogger("inktex.finetune")


def load_feedback(folder: Path, preprocess, vocab) -> tuple[list[np.ndarray], list[list[str]]]:
    """Model inputs and corrected tokens of the batch's train split."""
    manifest = json.loads((folder / "manifest.json").read_text())
    images, labels = [], []
    for entry in manifest["items"]:
        if entry.get("split") != "train":
            continue
        item_path = folder / "items" / f"{entry['id']}.json"
        if not item_path.is_file():
            continue
        item = json.loads(item_path.read_text())
        tokens = item["corrected_latex"].split()
        if item.get("held") or vocab.unknown(tokens):
            continue
        found = sorted((folder / "inputs").glob(f"{entry['id']}.*"))
        if not found:
            log.warning("feedback %s has no input; skipped", entry["id"])
            continue
        try:
            data = found[0].read_bytes()
            kind = item.get("input_kind", "image")
            if kind == "strokes":
                image = inputs.from_strokes(json.loads(data), preprocess)
            elif kind == "inkml":
                image = inputs.from_inkml(data, preprocess)
            else:
                image = inputs.from_image(data, preprocess)
        except (InkTeXError, ValueError) as exc:
            log.warning("feedback %s is unreadable (%s); skipped", entry["id"], exc)
            continue
        images.append(to_uint8(image))
        labels.append(tokens)
    return images, labels


def load_replay(folder: Path | None, preprocess, vocab, count: int, seed: int):
    """A random sample of `count` replay images (CROHME layout), uint8, with tokens."""
    if folder is None or not (folder / "labels.tsv").is_file() or count <= 0:
        return [], []
    with open(folder / "labels.tsv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh, delimiter="\t") if len(r) >= 2 and r[0].strip()]
    random.Random(seed).shuffle(rows)
    images, labels = [], []
    for name, latex in rows:
        if len(images) >= count:
            break
        path = folder / "images" / f"{name.strip()}.png"
        try:
            tokens = normalize_latex(latex)
            if not tokens or vocab.unknown(tokens) or not path.is_file():
                continue
            images.append(to_uint8(inputs.from_image(path.read_bytes(), preprocess)))
        except InkTeXError:
            continue
        labels.append(tokens)
    return images, labels


@dataclass
class FineTuned:
    """What `finetune` wrote and what the job records about it."""

    checkpoint: Path  # the fine-tuned model.pt
    samples: list[np.ndarray]  # a few of the batch's inputs (float32, 0..1): export checks
    parameters: dict  # the training overrides, replay and feedback_repeat
    trained_on: dict  # {"feedback": n, "replay": m} images (before repetition)
    report: dict  # the training report, without its per-epoch history


def finetune(
    feedback_dir: Path,
    base_dir: Path,
    out_dir: Path,
    replay_dir: Path | None = None,
    epochs: int = 3,
    steps: int = 0,
    lr: float = 3e-4,
    batch_size: int = 16,
    replay: int = 64,
    feedback_repeat: int = 4,
    seed: int = 0,
) -> FineTuned:
    """Fine-tune `base_dir`/model.pt on the batch (and replay); writes `out_dir`/model.pt.
    `steps` (optimiser steps), when set, is the budget instead of `epochs`."""
    import torch  # noqa: F401  (the training extra; fail here, clearly, without it)

    from training.checkpoint import load_checkpoint
    from training.data import InputPack
    from training.train import train

    base_ckpt = base_dir / "model.pt"
    model, vocab, pre, _ = load_checkpoint(base_ckpt)
    fb_images, fb_labels = load_feedback(feedback_dir, pre, vocab)
    if not fb_images:
        raise SystemExit("the feedback batch holds nothing to train on")
    rp_images, rp_labels = load_replay(replay_dir, pre, vocab, replay, seed)
    train_images = fb_images * feedback_repeat + rp_images
    train_labels = fb_labels * feedback_repeat + rp_labels
    val_images = (rp_images or fb_images)[:4]
    val_labels = (rp_labels or fb_labels)[:4]
    cfg = model.cfg.to_dict()
    cfg.pop("vocab_size")
    cfg["depths"] = tuple(cfg["depths"])
    overrides = {
        "epochs": 10**6 if steps else epochs,
        "max_steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "train_limit": 0,
        "val_limit": 0,
        "warmup_steps": 0,
        "augment": False,
        "patience": 10**6,
    }
    params = {
        "model": cfg,
        "train": {"preset": "tiny", "seed": seed, "init": str(base_ckpt), "overrides": overrides},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / "model.pt"
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "data", Path(tmp) / "run"
        data.mkdir()
        vocab.save(data / "vocab.json")
        (data / "preprocess.json").write_text(json.dumps(pre.to_dict()))
        InputPack(train_images, train_labels).save(data / "train.npz")
        InputPack(val_images, val_labels).save(data / "test2013.npz")
        report = train(params, data, run, resume=False)
        checkpoint.write_bytes((run / "last.pt").read_bytes())
    return FineTuned(
        checkpoint=checkpoint,
        samples=[x.astype(np.float32) / 255 for x in fb_images[:4]],
        parameters={**overrides, "replay": replay, "feedback_repeat": feedback_repeat},
        trained_on={"feedback": len(fb_images), "replay": len(rp_images)},
        report={k: v for k, v in report.items() if k != "history"},
    )
