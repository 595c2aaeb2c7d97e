"""Training presets: `tiny` (seconds, for tests and CI), `cpu` and `gpu`.

`cpu` and `gpu` differ in schedule and batch size only, never in architecture or input size,
so a run started on one continues on the other. Any field can be overridden in params.yaml.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    max_steps: int = 0  # a budget of optimiser steps (0 = epochs decide); the LR follows it
    batch_size: int = 16  # the most inputs in a batch
    batch_pixels: int = 400_000  # a batch padded to its largest input stays within this
    workers: int = 1  # data loader processes rendering and augmenting strokes (0: in-process)
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 300
    label_smoothing: float = 0.1
    unk_prob: float = 0.15  # teacher-forcing inputs replaced by <unk>: fights exposure bias
    max_minutes: float = 0.0  # wall-clock budget; the LR schedule follows it when set
    patience: int = 20  # validations without a better ExpRate before stopping
    augment: bool = True
    augment_prob: float = 1.0  # share of training inputs augmented (the rest clean)
    photo_prob: float = 0.0  # share read as an image: rendered 256 px, degraded (training.photo)
    max_label_len: int = 150  # longer training labels are skipped (and counted)
    train_limit: int = 0  # 0 = every training sample
    val_limit: int = 0  # 0 = all of CROHME 2013
    val_every_minutes: float = 0.0  # 0 = validate once an epoch
    amp: bool = True  # bf16 autocast on CUDA and on CPUs with native bf16 (train.bf16_pays)
    grad_clip: float = 5.0
    stop_at_exprate: float = 0.0  # stop once validation reaches it (0 = never): overfit tests
    average_last: int = 0  # at the end, average the weights of the last N validations (0 = off)
    # BatchNorm normalises with its running statistics while training (fine-tuning a trained
    # model): training then sees the normalisation that serving uses, and they stay fixed
    freeze_batchnorm: bool = False
    freeze_encoder: bool = False  # train the decoder alone (a new decoder on trained features)
    encoder_lr_scale: float = 1.0  # the encoder's rate as a share of `lr`: a trained encoder
    # unfrozen under a decoder still learning moves slowly, so the decoder cannot undo it
    bidirectional: bool = False  # also read each label right to left (BTTR), one encoding
    profile_steps: int = 0  # log a profile of this many steps after ten (training.profiling)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "tiny": TrainConfig(
        epochs=2,
        batch_size=8,
        lr=3e-3,
        warmup_steps=0,
        label_smoothing=0.0,
        unk_prob=0.0,
        augment=False,
        amp=False,  # tests: the same fp32 arithmetic on every machine
        workers=0,
        train_limit=16,
        val_limit=8,
        patience=100,
    ),
    "cpu": TrainConfig(epochs=300, batch_size=24, lr=1e-3, average_last=5),
    "gpu": TrainConfig(
        epochs=400,
        batch_size=128,
        batch_pixels=4_000_000,
        workers=12,
        lr=2e-3,
        warmup_steps=200,
        max_minutes=7.0,
        val_every_minutes=0.75,
        average_last=5,
    ),
}


def resolve(preset: str, overrides: dict | None = None) -> TrainConfig:
    """The preset with any of its fields overridden (unknown keys are an error, not ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {sorted(PRESETS)}")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    names = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown training settings {sorted(unknown)}")
    base = PRESETS[preset]
    return replace(base, **{k: _as_type_of(getattr(base, k), k, v) for k, v in overrides.items()})


def _as_type_of(default, name: str, value):
    """`value` as the type of the field's default: YAML 1.1 reads `8e-4` as a string."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"train.{name} must be true or false, not {value!r}")
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"train.{name} must be a {type(default).__name__}, not {value!r}"
        ) from None
