"""The local stack's side of the feedback loop, without starting it: the bundled model's
checkpoint, `inktex seed`, and the training runner's stop and recovery (issue 8)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from lambda_testkit import TINY_MODEL

from local_stack.local_runner import LocalTrainingRunner, read_jobs, run_job
from local_stack.seed import EVAL, REPLAY, SeedError, plan, register_model, seed

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "inkml"
JOB = "inktex-dev-batch-000001-0a1b2c3d"
DESCRIPTION = {
    "TrainingJobName": JOB,
    "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}",
    "HyperParameters": {"batch": "1"},
    "InputDataConfig": [],
    "OutputDataConfig": {"S3OutputPath": "s3://models/training/"},
}


def keys(aws, bucket: str, prefix: str) -> list[str]:
    page = aws.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in page.get("Contents", []))


def test_the_bundled_models_checkpoint_is_registered_for_fine_tuning(aws, tmp_path):
    package = tmp_path / "package"
    shutil.copytree(TINY_MODEL, package)
    (package / "checkpoint.pt").write_bytes(b"weights")
    version = register_model(aws.registry, package, package / "checkpoint.pt")
    assert keys(aws, aws.model_bucket, "checkpoints/") == [
        f"checkpoints/{version}/VERSION",
        f"checkpoints/{version}/model.pt",
    ]
    assert f"models/{version}/checkpoint.pt" not in keys(aws, aws.model_bucket, "models/")
    assert aws.registry.alias("production").version == version


def test_seeding_from_the_fixtures_fills_both_sets(aws):
    summary = seed(aws.s3, aws.data_bucket, FIXTURES)
    assert summary["sets"] == {EVAL: 5, REPLAY: 5}
    for prefix in (EVAL, REPLAY):
        assert len(keys(aws, aws.data_bucket, f"{prefix}images/")) == 5
        labels = aws.s3.get_object(Bucket=aws.data_bucket, Key=f"{prefix}labels.tsv")["Body"]
        assert labels.read().decode().splitlines()[0].startswith("27_em_120\t")


def test_a_crohme_root_seeds_2013_as_eval_and_a_sample_of_train_as_replay(aws, tmp_path):
    names = sorted(p.stem for p in FIXTURES.glob("*.png"))
    labels = dict(
        line.split("\t", 1) for line in (FIXTURES / "labels.tsv").read_text().splitlines()
    )
    for split, chosen in (("test2013", names[:2]), ("train", names[2:])):
        (tmp_path / split).mkdir()
        for name in chosen:
            shutil.copy(FIXTURES / f"{name}.png", tmp_path / split)
        rows = "".join(f"{name}\t{labels[name]}\n" for name in chosen)
        (tmp_path / f"{split}.tsv").write_text(rows)
    sets = plan(tmp_path, replay=2)
    assert [r[0] for r in sets[EVAL]] == names[:2]
    assert len(sets[REPLAY]) == 2 and {r[0] for r in sets[REPLAY]} < set(names[2:])
    seed(aws.s3, aws.data_bucket, FIXTURES)
    seed(aws.s3, aws.data_bucket, tmp_path, replay=2)  # a re-seed replaces, never mixes
    assert len(keys(aws, aws.data_bucket, f"{EVAL}images/")) == 2
    with pytest.raises(SeedError):
        plan(tmp_path / "test2013")


def slow_program(tmp_path: Path) -> str:
    script = tmp_path / "slow"
    script.write_text("#!/bin/sh\nsleep 60\n")
    script.chmod(0o755)
    return str(script)


def test_a_job_killed_by_the_stacks_stop_is_delivered_as_stopped_next_time(tmp_path):
    stop, ended = threading.Event(), []
    work = tmp_path / "training"
    thread = threading.Thread(
        target=lambda: ended.append(
            run_job(DESCRIPTION, None, work, python=slow_program(tmp_path), stop=stop)
        )
    )
    thread.start()
    while not (work / JOB / "job.json").is_file():
        time.sleep(0.05)
    assert read_jobs(work)[0]["status"] == "InProgress"
    stop.set()
    thread.join(10)
    assert ended[0]["detail"]["TrainingJobStatus"] == "Stopped"
    assert read_jobs(work)[0]["delivered"] is False

    delivered = []
    runner = LocalTrainingRunner(None, None, work, deliver=delivered.append)
    assert runner.recover() == delivered and len(delivered) == 1
    assert delivered[0]["detail"]["TrainingJobStatus"] == "Stopped"
    assert delivered[0]["detail-type"] == "SageMaker Training Job State Change"
    assert read_jobs(work)[0]["delivered"] is True
    assert runner.recover() == []  # once


def test_a_job_left_running_by_a_crash_is_delivered_as_stopped(tmp_path):
    (tmp_path / JOB).mkdir()
    record = {"job": JOB, "status": "InProgress", "started_at": 1.0, "delivered": False}
    record["description"] = DESCRIPTION
    (tmp_path / JOB / "job.json").write_text(json.dumps(record))
    failing = []

    def deliver(event):
        failing.append(event)
        if len(failing) == 1:
            raise ConnectionError("the emulator is going away")

    runner = LocalTrainingRunner(None, None, tmp_path, deliver=deliver)
    assert runner.recover() == []  # not delivered: tried again next time
    assert runner.recover()[0]["detail"]["TrainingJobStatus"] == "Stopped"
    assert read_jobs(tmp_path)[0]["status"] == "Stopped"
