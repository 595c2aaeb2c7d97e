"""Fine-tune the production model on a feedback batch: the retraining job's entry point.

SageMaker script mode runs it in an AWS PyTorch container (`sagemaker_program`
training/finetune.py); the local stack's runner runs it as a process. Either way it reads:
- `SM_CHANNEL_FEEDBACK`: a claimed batch, `feedback/batches/<n>/` (manifest.json,
  items/<id>.json with the corrected tokens, inputs/<id>.<ext> as the user sent them);
- `SM_CHANNEL_REPLAY`: a replay set in the CROHME layout (labels.tsv, images/<name>.png),
  sampled so the model does not forget what it knew;
- `SM_CHANNEL_BASE`: the production model's checkpoint, model.pt;
and writes to `SM_MODEL_DIR` the fine-tuned checkpoint and its exported ONNX package (the
serving issue's export, verified against PyTorch), whose card and lineage.json cite the
batch manifest (object versions included), the base model, the parameters and the code
commit. With `--model-bucket` it also registers the package: models/<version>/,
checkpoints/<version>/model.pt and training/<job>/result.json, which the promotion
function reads. Only the batch's "train" split is trained on; "heldout" is for promotion.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (SageMaker): make `training` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

from inktex import inputs  # noqa: E402
from inktex.errors import InkTeXError  # noqa: E402
from inktex.latex import normalize_latex  # noqa: E402
from inktex.package import write_manifest  # noqa: E402
from inktex.preprocess import to_uint8  # noqa: E402

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


def code_commit() -> str:
    if os.environ.get("INKTEX_COMMIT"):
        return os.environ["INKTEX_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def finetune(
    feedback_dir: Path,
    base_dir: Path,
    out_dir: Path,
    replay_dir: Path | None = None,
    epochs: int = 3,
    lr: float = 3e-4,
    batch_size: int = 16,
    replay: int = 64,
    feedback_repeat: int = 4,
    seed: int = 0,
    base_version: str = "",
) -> dict:
    """Fine-tune and export; returns the result record (version, lineage)."""
    import torch  # noqa: F401  (the training extra; fail here, clearly, without it)

    from model_export.export import export_package
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
        "epochs": epochs,
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
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "data", Path(tmp) / "run"
        data.mkdir()
        vocab.save(data / "vocab.json")
        (data / "preprocess.json").write_text(json.dumps(pre.to_dict()))
        InputPack(train_images, train_labels).save(data / "train.npz")
        InputPack(val_images, val_labels).save(data / "test2013.npz")
        report = train(params, data, run, resume=False)
        checkpoint = out_dir / "model.pt"
        checkpoint.write_bytes((run / "last.pt").read_bytes())
    samples = [x.astype(np.float32) / 255 for x in fb_images[:4]]
    package_dir = out_dir / "package"
    package = export_package(checkpoint, package_dir, samples)
    manifest = json.loads((feedback_dir / "manifest.json").read_text())
    lineage = {
        "code_commit": code_commit(),
        "base_version": base_version or _base_version(base_dir),
        "batch": manifest["batch"],
        "batch_manifest": manifest,
        "parameters": {**overrides, "replay": replay, "feedback_repeat": feedback_repeat},
        "seed": seed,
        "trained_on": {"feedback": len(fb_images), "replay": len(rp_images)},
        "train_report": {k: v for k, v in report.items() if k != "history"},
    }
    (package_dir / "lineage.json").write_text(json.dumps(lineage, indent=2))
    with open(package_dir / "MODEL_CARD.md", "a") as card:
        card.write(
            f"\n## Fine-tuning lineage\n\n- **Base model**: {lineage['base_version']}\n"
            f"- **Feedback batch**: {manifest['batch']} ({len(manifest['items'])} corrections, "
            f"digest {manifest['digest'][:12]}; object versions in lineage.json)\n"
            f"- **Trained on**: {len(fb_images)} corrections x{feedback_repeat} and "
            f"{len(rp_images)} replay images\n- **Code**: {lineage['code_commit']}\n"
        )
    write_manifest(package_dir, package.version)
    return {"version": package.version, "lineage": lineage}


def _base_version(base_dir: Path) -> str:
    path = base_dir / "VERSION"  # written beside each registered checkpoint
    return path.read_text().strip() if path.is_file() else "unknown"


def register(out_dir: Path, result: dict, bucket: str, job: str) -> None:
    """Upload the package, its checkpoint and the result record to the model bucket."""
    import boto3  # in the container and the local stack; only needed to register

    s3 = boto3.client("s3")
    version = result["version"]
    for path in sorted((out_dir / "package").iterdir()):
        s3.upload_file(str(path), bucket, f"models/{version}/{path.name}")
    s3.upload_file(str(out_dir / "model.pt"), bucket, f"checkpoints/{version}/model.pt")
    s3.put_object(
        Bucket=bucket, Key=f"checkpoints/{version}/VERSION", Body=version.encode()
    )  # so a later fine-tune from it names its base
    s3.put_object(
        Bucket=bucket,
        Key=f"training/{job}/result.json",
        Body=json.dumps(result).encode(),
        ContentType="application/json",
    )


def main(argv: list[str] | None = None) -> None:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--feedback", type=Path, default=env.get("SM_CHANNEL_FEEDBACK"))
    parser.add_argument("--replay-dir", type=Path, default=env.get("SM_CHANNEL_REPLAY"))
    parser.add_argument("--base", type=Path, default=env.get("SM_CHANNEL_BASE"))
    parser.add_argument("--out", type=Path, default=env.get("SM_MODEL_DIR", "runs/finetune"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--replay", type=int, default=64, help="replay images to mix in")
    parser.add_argument("--feedback-repeat", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-bucket", default="", help="register the package there")
    parser.add_argument("--job-name", default=env.get("TRAINING_JOB_NAME", "local"))
    parser.add_argument("--base-version", default="")
    parser.add_argument("--batch", default="")
    args, unknown = parser.parse_known_args(argv)  # SageMaker adds its own hyperparameters
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if unknown:
        log.info("ignoring %s", unknown)
    if args.feedback is None or args.base is None:
        parser.error("--feedback and --base (or SM_CHANNEL_FEEDBACK, SM_CHANNEL_BASE) are needed")
    result = finetune(
        args.feedback,
        args.base,
        args.out,
        args.replay_dir,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        replay=args.replay,
        feedback_repeat=args.feedback_repeat,
        seed=args.seed,
        base_version=args.base_version,
    )
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    if args.model_bucket:
        register(args.out, result, args.model_bucket, args.job_name)
    print(json.dumps({"version": result["version"], "job": args.job_name}))


if __name__ == "__main__":
    main()
