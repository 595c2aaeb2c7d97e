"""Train the recogniser: `python -m training.train`, driven by params.yaml.

CPU or CUDA (bf16 autocast), seeded, resumable from `last.pt`, fed by data loader workers
that render and augment the corpus's strokes (`training.data`) in batches of similar size,
logged with dvclive (when installed), validated on CROHME 2013 with the core's search,
early-stopped on validation ExpRate, and under `torchrun` data-parallel across processes.
CROHME 2014 is the reported test: nothing here ever looks at it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from inktex.metrics import score
from inktex.preprocess import PreprocessConfig
from inktex.vocab import Vocabulary
from training.augment import StrokeAugment
from training.average import average_checkpoints
from training.checkpoint import load_checkpoint, save_checkpoint
from training.data import ExpressionDataset, SizeBatchSampler, collate, load_split, render_all
from training.decoding import recognize_arrays
from training.model import WIDTHS, ModelConfig, Recognizer, count_parameters, init_weights
from training.presets import TrainConfig, resolve
from training.profiling import step_profiler
from training.tracking import Tracker

log = logging.getLogger("inktex.train")


def right_to_left(targets: torch.Tensor, lengths: torch.Tensor, vocab: Vocabulary) -> torch.Tensor:
    """Targets (B, T) read the other way: each label's tokens reversed, then <sos> where
    <eos> was (BTTR's right-to-left reading; its first input is <eos>)."""
    j = torch.arange(targets.shape[1], device=targets.device)
    source = (lengths[:, None] - 2 - j).clamp(min=0)
    reversed_ = targets.gather(1, source).masked_fill(j >= lengths[:, None] - 1, vocab.pad_id)
    return reversed_.scatter(1, (lengths - 1)[:, None], vocab.sos_id)


def teacher_forcing_loss(
    model,
    images,
    mask,
    targets,
    lengths,
    vocab: Vocabulary,
    cfg: TrainConfig,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, float]:
    """Cross-entropy over each next token, in both reading directions with `cfg.bidirectional`;
    returns the loss and the batch's token accuracy."""
    t = int(lengths.max())
    targets = targets[:, :t]
    starts = torch.full_like(targets[:, :1], vocab.sos_id)
    if cfg.bidirectional:  # one encoding, two readings: left to right, then right to left
        targets = torch.cat([targets, right_to_left(targets, lengths, vocab)])
        starts = torch.cat([starts, torch.full_like(starts, vocab.eos_id)])
    inputs = torch.cat([starts, targets[:, :-1]], dim=1)
    if cfg.unk_prob > 0 and model.training:
        noise = torch.rand(inputs.shape, device=inputs.device, generator=generator)
        replace = (noise < cfg.unk_prob) & (inputs != vocab.pad_id)
        replace[:, 0] = False
        inputs = inputs.masked_fill(replace, vocab.unk_id)
    logits = model(images, inputs, mask)
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        targets.reshape(-1),
        ignore_index=vocab.pad_id,
        label_smoothing=cfg.label_smoothing,
    )
    mask = targets != vocab.pad_id
    accuracy = ((logits.argmax(-1) == targets) & mask).sum() / mask.sum()
    return loss, float(accuracy)


def lr_factor(progress: float, step: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 2% over the run's progress (steps or minutes)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def same_encoder(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether two models' encoders have the same weights' shapes (their decoders may differ).
    `norm` is the encoder's: BatchNorm's weights fit its running statistics, not an input's own."""
    decoder_fields = (
        "decoder",
        "embed",
        "hidden",
        "attention",
        "coverage_channels",
        "coverage_kernel",
        "dropout",
        "arm_channels",
        "arm_kernel",
        "layers",
        "heads",
        "ffn",
    )
    return replace(a, **{f: getattr(b, f) for f in decoder_fields}) == b


def train_mode(model: Recognizer, freeze_batchnorm: bool, freeze_encoder: bool = False) -> None:
    """Training mode; with `freeze_batchnorm` BatchNorm keeps normalising with its running
    statistics, as serving does, so the weights fit the statistics that inference will use
    (`norm: group` has none, so nothing to freeze); a frozen encoder stays wholly in evaluation
    mode."""
    model.train()
    if freeze_encoder:
        model.encoder.eval()
    if freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def param_groups(model: Recognizer, tcfg: TrainConfig) -> list[dict]:
    """The optimiser's groups: the encoder's trainable weights at `encoder_lr_scale` of the
    rate, the rest at the rate (each group's `lr_scale`, which the schedule multiplies)."""
    encoder: list[torch.nn.Parameter] = []
    rest: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (encoder if name.startswith("encoder.") else rest).append(p)
    groups = [{"params": rest, "lr_scale": 1.0}]  # first: the rate logged is the decoder's
    if encoder:
        groups.append({"params": encoder, "lr_scale": tcfg.encoder_lr_scale})
    return groups


def bf16_pays(device: torch.device) -> bool:
    """Whether bf16 autocast speeds training up here: on CUDA, and on CPUs with native bf16
    (AVX512-BF16 or AMX; a step of the cpu preset measured 1.45x faster on this project's
    2-core EPYC). Elsewhere bf16 is emulated and slower. Validation stays fp32 on a CPU."""
    if device.type == "cuda":
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def memory_log(device: torch.device) -> dict[str, float]:
    """The accelerator's peak memory so far: how much room a larger batch would have."""
    if device.type != "cuda":
        return {}
    return {"train/peak_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30}


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); starts the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def build_model(params: dict, vocab: Vocabulary, device: torch.device) -> Recognizer:
    spec = params["model"]
    width = WIDTHS[spec.get("width", "base")]
    overrides = {k: v for k, v in spec.items() if k not in ("width",)}
    cfg = ModelConfig(vocab_size=len(vocab), **{**width, **overrides})
    model = Recognizer(cfg)
    init_weights(model)
    return model.to(device)


def train(
    params: dict, data_dir: Path, out_dir: Path, resume: bool = True, mirror: Path | None = None
) -> dict:
    """Train per `params`; with `mirror`, each new best also goes there as small fp16 weights."""
    rank, world, device = setup_distributed()
    is_main = rank == 0
    tcfg = resolve(params["train"]["preset"], params["train"].get("overrides"))
    seed = int(params["train"].get("seed", 0))
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed)  # same initial weights on every rank
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    else:
        # No cuDNN autotuning: batches are padded to their own sizes, so nearly every batch
        # is a new shape, and each new shape would be benchmarked afresh.
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    vocab = Vocabulary.load(data_dir / "vocab.json")
    pre = PreprocessConfig.from_dict(json.loads((data_dir / "preprocess.json").read_text()))
    train_split = load_split(data_dir / "train.npz")
    augment = StrokeAugment(input_prob=tcfg.augment_prob) if tcfg.augment else None
    train_set = ExpressionDataset(train_split, pre, augment, seed, tcfg.photo_prob)
    limit = min(tcfg.train_limit or len(train_split), len(train_split))
    keep = [i for i in range(limit) if len(train_split.labels[i]) <= tcfg.max_label_len]
    dropped = limit - len(keep)
    val_split = load_split(data_dir / "test2013.npz")
    val_count = min(tcfg.val_limit or len(val_split), len(val_split))
    val_set = ExpressionDataset(val_split, pre)
    val_images = render_all(val_set, val_count)
    val_labels = val_split.labels[:val_count]

    model = build_model(params, vocab, device)
    if tcfg.freeze_encoder:  # the decoder learns to read features that stay as they are
        model.encoder.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        param_groups(model, tcfg), lr=tcfg.lr, weight_decay=tcfg.weight_decay
    )
    state = {
        "epoch": 0,
        "step": 0,
        "elapsed_s": 0.0,
        "best_exprate": -1.0,
        "stale": 0,
        "history": [],
    }
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    snapshot_dir = out_dir / "snapshots"
    if not (resume and last_path.exists()):  # a fresh run averages only its own weights
        shutil.rmtree(snapshot_dir, ignore_errors=True)
    init = params["train"].get("init") or ""
    if resume and last_path.exists():
        _, _, _, payload = load_checkpoint(last_path, device)
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["optimizer"])
        state = payload["train_state"]
        log.info("resumed from %s at epoch %d", last_path, state["epoch"])
    elif init:
        init_model, init_vocab, _, _ = load_checkpoint(Path(init), device)
        if init_vocab.tokens != vocab.tokens:
            raise ValueError(f"{init} was built with another vocabulary")
        if init_model.cfg == model.cfg:
            model.load_state_dict(init_model.state_dict())
            log.info("started from the weights of %s", init)
        elif init_model.cfg.norm != model.cfg.norm:
            raise ValueError(
                f"{init} normalises with {init_model.cfg.norm!r} norm and this run with "
                f"{model.cfg.norm!r}: its weights fit other statistics. Start from scratch "
                f'(train.init: "") or set model.norm: {init_model.cfg.norm}'
            )
        elif same_encoder(init_model.cfg, model.cfg):  # a new decoder on a trained encoder
            model.encoder.load_state_dict(init_model.encoder.state_dict())
            log.info("started the encoder from the weights of %s, the decoder anew", init)
        else:
            raise ValueError(f"{init} was built with another architecture")

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    tracker = Tracker(out_dir, enabled=is_main, resume=resume and last_path.exists())
    amp = tcfg.amp and bf16_pays(device)
    generator = torch.Generator(device=device).manual_seed(seed + 1000 * rank + state["epoch"])
    # Every rank takes the same number of steps, or DDP's all-reduce would wait forever.
    sampler = SizeBatchSampler(
        train_set.sizes(), keep, tcfg.batch_pixels, tcfg.batch_size, seed, rank, world
    )
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=tcfg.workers,
        collate_fn=lambda items: collate(items, train_split.labels, vocab),
        # Workers outlive an epoch: restarting 12 of them cost a lent H200 up to 78% of the
        # first seconds of each 45-second epoch (docs/experiments.md, session 12).
        persistent_workers=tcfg.workers > 0,
        prefetch_factor=8 if tcfg.workers else None,
    )
    steps_per_epoch = max(1, len(sampler))
    total_steps = tcfg.max_steps or steps_per_epoch * tcfg.epochs
    budget_s = tcfg.max_minutes * 60
    encoder_note = ""
    if tcfg.freeze_encoder:
        encoder_note = " (frozen encoder)"
    elif tcfg.encoder_lr_scale != 1.0:
        encoder_note = f" (encoder at {tcfg.encoder_lr_scale:g} of the rate)"
    if is_main:
        log.info(
            "%s encoder, %s decoder%s, %.2f M parameters, %d training samples (%d too long, "
            "skipped), %d validation, device %s x%d%s",
            model.cfg.arch,
            model.cfg.decoder,
            encoder_note,
            count_parameters(model) / 1e6,
            len(keep),
            dropped,
            len(val_labels),
            device,
            world,
            ", bf16 autocast" if amp else "",
        )

    def progress() -> float:
        time_part = state["elapsed_s"] / budget_s if budget_s else 0.0
        return max(state["step"] / max(total_steps, 1), time_part)

    # What every checkpoint records of how it was trained and from what.
    provenance = {"train_config": tcfg.to_dict(), "init": init or None}

    def save_best(candidate: Recognizer, metrics: dict) -> None:
        extra = {"metrics": metrics, **provenance}
        save_checkpoint(best_path, candidate, vocab, pre, **extra)
        if mirror is not None:
            save_checkpoint(mirror / "best_fp16.pt", candidate, vocab, pre, half=True, **extra)

    # A prediction 3 tokens longer than every label is more than 2 edits from any: decoding
    # further changes no ExpRate, <=1 or <=2, and an untrained decoder that never ends would
    # otherwise run to the serving limit on every expression.
    val_max_len = max(map(len, val_labels), default=0) + 3

    def validate(candidate: Recognizer) -> dict:
        predictions = recognize_arrays(
            candidate, val_images, vocab, device, amp=amp, max_len=val_max_len
        )
        return score(zip(val_labels, predictions, strict=True)).to_dict()

    def validate_and_save() -> bool:
        """Validate, checkpoint; True when training should stop early."""
        if not is_main:
            return False
        tick()
        scores = validate(model)
        improved = scores["exprate"] > state["best_exprate"]
        state["stale"] = 0 if improved else state["stale"] + 1
        state["best_exprate"] = max(state["best_exprate"], scores["exprate"])
        record = {
            "epoch": state["epoch"],
            "step": state["step"],
            "minutes": round(state["elapsed_s"] / 60, 2),
            **{f"val_{k}": v for k, v in scores.items()},
        }
        state["history"].append(record)
        tracker.log(
            {
                "val/exprate": scores["exprate"],
                "val/le1": scores["le1"],
                "val/le2": scores["le2"],
                "val/token_accuracy": scores["token_accuracy"],
            },
            step=state["step"],
        )
        if improved:
            save_best(model, record)
        save_checkpoint(
            last_path,
            model,
            vocab,
            pre,
            optimizer=optimizer.state_dict(),
            train_state=state,
            metrics=record,
            **provenance,
        )
        if tcfg.average_last:  # the weights of the last few validations, for averaging
            save_checkpoint(snapshot_dir / f"step_{state['step']:07d}.pt", model, vocab, pre)
            for old in sorted(snapshot_dir.glob("step_*.pt"))[: -tcfg.average_last]:
                old.unlink()
        log.info(
            "epoch %d step %d: val ExpRate %.2f%% (best %.2f%%), %.1f min",
            state["epoch"],
            state["step"],
            scores["exprate"],
            state["best_exprate"],
            state["elapsed_s"] / 60,
        )
        train_mode(model, tcfg.freeze_batchnorm, tcfg.freeze_encoder)
        reached = bool(tcfg.stop_at_exprate) and scores["exprate"] >= tcfg.stop_at_exprate
        return state["stale"] >= tcfg.patience or reached

    def average_snapshots(paths: list[Path]) -> dict | None:
        """Validate the mean of the snapshots' weights; it becomes best.pt when it is better."""
        if len(paths) < 2:
            return None
        averaged_model, _, _ = average_checkpoints(paths)
        scores = validate(averaged_model.to(device))
        better = scores["exprate"] > state["best_exprate"]
        record = {"snapshots": len(paths), "val_exprate": scores["exprate"], "kept": better}
        log.info(
            "the mean of the last %d snapshots: val ExpRate %.2f%% (best %.2f%%)%s",
            len(paths),
            scores["exprate"],
            state["best_exprate"],
            ": it becomes best.pt" if better else "",
        )
        if better:
            state["best_exprate"] = scores["exprate"]
            save_best(averaged_model, {**record, **scores})
        return record

    stop = False
    last_val = time.monotonic()
    clock_start, elapsed_before = time.monotonic(), state["elapsed_s"]

    def tick() -> None:  # wall-clock time, validation included: budgets are wall-clock
        state["elapsed_s"] = elapsed_before + time.monotonic() - clock_start

    profiler = step_profiler(tcfg.profile_steps, device) if is_main else None
    while state["epoch"] < tcfg.epochs and progress() < 1 and not stop:
        train_mode(model, tcfg.freeze_batchnorm, tcfg.freeze_encoder)
        sampler.epoch = state["epoch"]
        seen, rate_since = 0, time.monotonic()  # training inputs a second, for the log
        # and the share of that time spent waiting for the loader's next batch: what bounds
        # a fast accelerator (each step ends synchronised, by loss.item())
        waited, fetched = 0.0, time.monotonic()
        bar = tqdm(
            loader,
            desc=f"epoch {state['epoch'] + 1}",
            disable=not is_main,
            unit="batch",
            leave=False,
        )
        for batch in bar:
            waited += time.monotonic() - fetched
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            rate = tcfg.lr * lr_factor(progress(), state["step"], tcfg.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = group["lr_scale"] * rate
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss, accuracy = teacher_forcing_loss(
                    net,
                    batch["images"],
                    batch["mask"],
                    batch["targets"],
                    batch["lengths"],
                    vocab,
                    tcfg,
                    generator,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            optimizer.step()
            state["step"] += 1
            if profiler:
                profiler.step()
            tick()
            seen += len(batch["images"]) * world
            since = max(time.monotonic() - rate_since, 1e-9)  # validation excluded
            rate, wait = seen / since, waited / since
            bar.set_postfix(
                loss=f"{loss.item():.3f}",
                acc=f"{accuracy:.3f}",
                img_s=f"{rate:.1f}",
                wait=f"{wait:.0%}",
                refresh=False,
            )
            if state["step"] % 20 == 0:
                tracker.log(
                    {
                        "train/loss": loss.item(),
                        "train/token_accuracy": accuracy,
                        "train/lr": optimizer.param_groups[0]["lr"],
                        "train/images_per_s": rate,
                        "train/loader_wait": wait,
                        **memory_log(device),
                    },
                    step=state["step"],
                )
            if budget_s and state["elapsed_s"] >= budget_s:
                break
            if tcfg.max_steps and state["step"] >= tcfg.max_steps:
                break
            if tcfg.val_every_minutes and time.monotonic() - last_val > tcfg.val_every_minutes * 60:
                stop = _sync_stop(validate_and_save(), world, device)
                last_val = time.monotonic()
                seen, rate_since, waited = 0, time.monotonic(), 0.0
                if stop:
                    break
            fetched = time.monotonic()
        else:
            state["epoch"] += 1
            if not tcfg.val_every_minutes:
                stop = _sync_stop(validate_and_save(), world, device)
    if profiler:
        profiler.stop()
    # The final state is always validated and saved, so a budget's end loses nothing.
    validate_and_save()
    averaged = None
    if is_main and tcfg.average_last > 1:
        averaged = average_snapshots(sorted(snapshot_dir.glob("step_*.pt")))
    tracker.close()
    report = {
        "epochs": state["epoch"],
        "steps": state["step"],
        "minutes": round(state["elapsed_s"] / 60, 2),
        "best_val_exprate": state["best_exprate"],
        "averaged": averaged,
        "history": state["history"][-5:],
        "parameters": count_parameters(model),
        "device": str(device),
        "world_size": world,
    }
    if is_main:
        for folder in {out_dir, mirror or out_dir}:
            (folder / "train_report.json").write_text(json.dumps(report, indent=2))
        log.info("finished: %s", json.dumps({k: v for k, v in report.items() if k != "history"}))
    if world > 1:
        dist.destroy_process_group()
    return report


def _sync_stop(stop: bool, world: int, device: torch.device) -> bool:
    """Rank 0 decides; every rank learns it (others wait here while rank 0 validates)."""
    if world == 1:
        return stop
    flag = torch.tensor([int(stop)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def apply_settings(params: dict, settings: list[str]) -> dict:
    """params.yaml with `section.key=value` settings applied in order; `train.<field>` goes to
    the preset's overrides, and `train.overrides={}` first drops the file's own."""
    for item in settings:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not (sep and dot and name):
            raise ValueError(f"{item!r}: expected section.key=value")
        target = params.setdefault(section, {})
        if section == "train" and name not in ("preset", "seed", "init", "overrides"):
            target = params["train"]["overrides"] = target.get("overrides") or {}
        target[name] = yaml.safe_load(value)
    return params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--out", type=Path, default=Path("runs/train"))
    parser.add_argument(
        "--no-resume", action="store_true", help="start over even if last.pt exists"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="train.KEY=VALUE",
        help="override a params.yaml value (e.g. train.preset=gpu; train.overrides={} drops "
        "the file's overrides, so that later --set values stand alone)",
    )
    parser.add_argument(
        "--mirror",
        type=Path,
        default=None,
        help="also write each new best as fp16 weights here (a lent GPU's $OUT)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    params = apply_settings(yaml.safe_load(Path(args.params).read_text()), args.set)
    args.out.mkdir(parents=True, exist_ok=True)
    train(params, args.data, args.out, resume=not args.no_resume, mirror=args.mirror)


if __name__ == "__main__":
    main()
