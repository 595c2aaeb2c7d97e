"""The retraining job (model_export/finetune_job.py) on a real (tiny) checkpoint, and the
local job runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = FIXTURES / "tiny_model"
INKML = FIXTURES / "inkml"
LABELS = dict(line.split("\t", 1) for line in (INKML / "labels.tsv").read_text().splitlines())


def tiny_checkpoint(path: Path) -> None:
    """A tiny-width model with the fixture package's vocabulary and preprocessing."""
    import torch

    from inktex.preprocess import PreprocessConfig
    from inktex.vocab import Vocabulary
    from training.checkpoint import save_checkpoint
    from training.train import build_model

    torch.manual_seed(0)
    vocab = Vocabulary.load(TINY / "vocab.json")
    pre = PreprocessConfig.from_dict(json.loads((TINY / "preprocess.json").read_text()))
    model = build_model({"model": {"width": "tiny"}}, vocab, torch.device("cpu"))
    save_checkpoint(path, model, vocab, pre)


def feedback_batch(folder: Path) -> dict:
    """A claimed batch as the trigger lays it out: manifest, items, inputs (real images)."""
    from inktex.latex import normalize_latex

    names = ["RIT_2014_19", "27_em_120"]
    items = []
    for i, name in enumerate(names):
        fid = f"{i:032x}"
        (folder / "items").mkdir(parents=True, exist_ok=True)
        (folder / "inputs").mkdir(exist_ok=True)
        shutil.copy(INKML / f"{name}.png", folder / "inputs" / f"{fid}.png")
        item = {
            "id": fid,
            "input_key": f"inputs/u/{name}.png",
            "input_kind": "image",
            "corrected_latex": " ".join(normalize_latex(LABELS[name])),
            "held": False,
        }
        (folder / "items" / f"{fid}.json").write_text(json.dumps(item))
        items.append(
            {
                "key": f"feedback/pending/{fid}.json",
                "version_id": f"v{i}",
                "id": fid,
                "split": "train",
            }
        )
    manifest = {"batch": 7, "digest": "ab" * 32, "items": items}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


@pytest.mark.torch
@pytest.mark.slow
def test_the_job_exports_and_registers_a_new_package_citing_its_batch(tmp_path):
    import boto3
    from moto import mock_aws

    from functions.common.model_bucket import checkpoint_key, training_result_key
    from functions.common.registry import ModelRegistry
    from inktex.package import ModelPackage
    from model_export.finetune_job import finetune_and_export, register

    base = tmp_path / "base"
    base.mkdir()
    tiny_checkpoint(base / "model.pt")
    (base / "VERSION").write_text("base-0001")
    manifest = feedback_batch(tmp_path / "feedback")
    replay = tmp_path / "replay"
    (replay / "images").mkdir(parents=True)
    for name in ("KME1G3_2_sub_10", "MfrDB1843"):
        shutil.copy(INKML / f"{name}.png", replay / "images" / f"{name}.png")
    (replay / "labels.tsv").write_text(
        "".join(f"{n}\t{LABELS[n]}\n" for n in ("KME1G3_2_sub_10", "MfrDB1843"))
    )
    result = finetune_and_export(
        tmp_path / "feedback",
        base,
        tmp_path / "out",
        replay,
        steps=3,  # a budget of steps, the same work on any machine
        lr=1e-3,
        batch_size=4,
        replay=2,
        feedback_repeat=1,
    )
    package = ModelPackage.load(tmp_path / "out" / "package")
    assert package.version == result["version"]
    lineage = json.loads((package.path / "lineage.json").read_text())
    assert lineage["base_version"] == "base-0001"
    assert lineage["batch_manifest"] == manifest  # object versions included
    assert lineage["trained_on"]["feedback"] == 2 and lineage["trained_on"]["replay"] >= 1
    assert lineage["train_report"]["steps"] == 3 and lineage["parameters"]["max_steps"] == 3
    assert "Feedback batch**: 7" in (package.path / "MODEL_CARD.md").read_text()
    assert (tmp_path / "out" / "model.pt").is_file()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        assert register(tmp_path / "out", result, "models", "job-1", s3=s3) == package.version
        registry = ModelRegistry(s3, None, "models")
        assert registry.verify(package.version).version == package.version
        base_of_next = s3.get_object(Bucket="models", Key=checkpoint_key(package.version))
        assert base_of_next["Body"].read() == (tmp_path / "out" / "model.pt").read_bytes()
        record = s3.get_object(Bucket="models", Key=training_result_key("job-1"))["Body"].read()
        assert json.loads(record)["version"] == package.version


def test_the_local_runner_reports_a_failed_job_as_eventbridge_would(tmp_path):
    from local_stack.local_runner import command_for, run_job

    description = {
        "TrainingJobName": "inktex-dev-batch-000001-0a1b2c3d",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/"
        "inktex-dev-batch-000001-0a1b2c3d",
        "HyperParameters": {"sagemaker_program": '"model_export/finetune_job.py"', "batch": "1"},
        "InputDataConfig": [],
        "OutputDataConfig": {"S3OutputPath": "s3://models/training/"},
    }
    expected = ["py", "-m", "model_export.finetune_job", "--batch", "1"]
    assert command_for(description, "py") == expected
    del description["HyperParameters"]["sagemaker_program"]
    assert command_for(description, "py") == expected  # the job's program by default
    event = run_job(description, s3=None, work=tmp_path, python="false")
    sample = json.loads(
        (Path(__file__).resolve().parents[2] / "events" / "training_job_failed.json").read_text()
    )
    assert set(sample) <= set(event) and event["detail-type"] == sample["detail-type"]
    assert event["detail"]["TrainingJobStatus"] == "Failed"
    assert event["detail"]["TrainingJobName"] == description["TrainingJobName"]
    record = json.loads((tmp_path / description["TrainingJobName"] / "job.json").read_text())
    assert record["status"] == "Failed"
