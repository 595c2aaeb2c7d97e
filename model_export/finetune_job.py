"""The retraining job's entry point: fine-tune on a feedback batch, export, register.

SageMaker script mode runs it in an AWS PyTorch container (`sagemaker_program`
model_export/finetune_job.py, functions/common/retraining.py); the local stack's runner
runs it as a process. Either way it reads:
- `SM_CHANNEL_FEEDBACK`: a claimed batch, `feedback/batches/<n>/`;
- `SM_CHANNEL_REPLAY`: a replay set in the CROHME layout;
- `SM_CHANNEL_BASE`: the production model's checkpoint, model.pt (and VERSION);
and writes to `SM_MODEL_DIR` the fine-tuned checkpoint (training/finetune.py) and its
exported ONNX package (model_export/export.py, verified against PyTorch), whose card and
lineage.json cite the batch manifest (object versions included), the base model, the
parameters and the code commit. With `--model-bucket` it also registers both through the
model registry (functions/common/registry.py, which owns the bucket's layout) and leaves
the job's result record, which the promotion function reads.

It lives here, above both training and export, so that training never imports the
exporter: model_export -> training, one way.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (SageMaker): make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402

from inktex.package import write_manifest  # noqa: E402

log = logging.getLogger("inktex.finetune")

PACKAGE_DIR = "package"  # under the job's output folder, beside model.pt


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


def _base_version(base_dir: Path) -> str:
    path = base_dir / "VERSION"  # written beside each registered checkpoint
    return path.read_text().strip() if path.is_file() else "unknown"


def finetune_and_export(
    feedback_dir: Path,
    base_dir: Path,
    out_dir: Path,
    replay_dir: Path | None = None,
    base_version: str = "",
    **training: int | float,
) -> dict:
    """Fine-tune (`training` are training.finetune.finetune's settings), export the package
    to `out_dir`/package with its lineage; returns the result record (version, lineage)."""
    from model_export.export import export_package
    from training.finetune import finetune

    tuned = finetune(feedback_dir, base_dir, out_dir, replay_dir, **training)
    package_dir = out_dir / PACKAGE_DIR
    package = export_package(tuned.checkpoint, package_dir, tuned.samples)
    manifest = json.loads((feedback_dir / "manifest.json").read_text())
    lineage = {
        "code_commit": code_commit(),
        "base_version": base_version or _base_version(base_dir),
        "batch": manifest["batch"],
        "batch_manifest": manifest,
        "parameters": tuned.parameters,
        "seed": training.get("seed", 0),
        "trained_on": tuned.trained_on,
        "train_report": tuned.report,
    }
    (package_dir / "lineage.json").write_text(json.dumps(lineage, indent=2))
    trained_on = tuned.trained_on
    with open(package_dir / "MODEL_CARD.md", "a") as card:
        card.write(
            f"\n## Fine-tuning lineage\n\n- **Base model**: {lineage['base_version']}\n"
            f"- **Feedback batch**: {manifest['batch']} ({len(manifest['items'])} corrections, "
            f"digest {manifest['digest'][:12]}; object versions in lineage.json)\n"
            f"- **Trained on**: {trained_on['feedback']} corrections "
            f"x{tuned.parameters['feedback_repeat']} and {trained_on['replay']} replay images\n"
            f"- **Code**: {lineage['code_commit']}\n"
        )
    write_manifest(package_dir, package.version)
    return {"version": package.version, "lineage": lineage}


def register(out_dir: Path, result: dict, bucket: str, job: str, s3=None) -> str:
    """Register the package and its checkpoint, then the job's result record (last: the
    promotion function trusts a result whose package is already there)."""
    from functions.common.registry import ModelRegistry

    if s3 is None:
        import boto3  # in the container and the local stack; only needed to register

        s3 = boto3.client("s3")
    registry = ModelRegistry(s3, None, bucket)
    version = registry.register(out_dir / PACKAGE_DIR, out_dir / "model.pt")
    registry.put_training_result(job, result)
    return version


def main(argv: list[str] | None = None) -> None:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--feedback", type=Path, default=env.get("SM_CHANNEL_FEEDBACK"))
    parser.add_argument("--replay-dir", type=Path, default=env.get("SM_CHANNEL_REPLAY"))
    parser.add_argument("--base", type=Path, default=env.get("SM_CHANNEL_BASE"))
    parser.add_argument("--out", type=Path, default=env.get("SM_MODEL_DIR", "runs/finetune"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=0, help="optimiser steps (0: --epochs)")
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
    result = finetune_and_export(
        args.feedback,
        args.base,
        args.out,
        args.replay_dir,
        base_version=args.base_version,
        epochs=args.epochs,
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        replay=args.replay,
        feedback_repeat=args.feedback_repeat,
        seed=args.seed,
    )
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    if args.model_bucket:
        register(args.out, result, args.model_bucket, args.job_name)
    print(json.dumps({"version": result["version"], "job": args.job_name}))


if __name__ == "__main__":
    main()
