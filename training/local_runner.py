"""Runs the training jobs that the local stack's emulator accepted, as real processes.

The local stack's emulator (moto) records a `CreateTrainingJob` and reports it Completed at
once; nothing runs. This runner does what SageMaker would: for each new job it downloads
the job's input channels from S3 into `<work>/<job>/input/data/<channel>/`, runs the
job's program (`python -m training.finetune`, CPU) with the SageMaker environment
(`SM_CHANNEL_*`, `SM_MODEL_DIR`, the hyperparameters as `--key value`), keeps the job's
true status and log under `<work>/<job>/`, and when it ends hands the same "SageMaker
Training Job State Change" event that EventBridge would deliver to `deliver` (the local
stack passes it to the training-events function). `inktex jobs` reads `<work>/*/job.json`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]


def state_change_event(description: dict, status: str, failure_reason: str = "") -> dict:
    """An EventBridge "SageMaker Training Job State Change" event (events/ has samples)."""
    name = description["TrainingJobName"]
    arn = description.get("TrainingJobArn") or f"arn:aws:sagemaker:::training-job/{name}"
    region, account = (arn.split(":")[3:5] + ["", ""])[:2]
    detail = {
        "TrainingJobName": name,
        "TrainingJobArn": arn,
        "TrainingJobStatus": status,
        "SecondaryStatus": status,
        "HyperParameters": description.get("HyperParameters", {}),
        "ModelArtifacts": {
            "S3ModelArtifacts": f"{description['OutputDataConfig']['S3OutputPath'].rstrip('/')}"
            f"/{name}/output/model.tar.gz"
        },
    }
    if failure_reason:
        detail["FailureReason"] = failure_reason[-1024:]
    return {
        "version": "0",
        "id": f"local-{name}-{status}",
        "detail-type": "SageMaker Training Job State Change",
        "source": "aws.sagemaker",
        "account": account or "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region or "us-east-1",
        "resources": [arn],
        "detail": detail,
    }


def download_prefix(s3, uri: str, dest: Path) -> int:
    parsed = urlparse(uri)
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :].lstrip("/")
            if not rel or rel.endswith("/"):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            count += 1
    return count


def command_for(description: dict, python: str = sys.executable) -> list[str]:
    """The program and its arguments, as SageMaker's script mode would run them."""
    args = [python, "-m", "training.finetune"]
    for key, value in sorted(description.get("HyperParameters", {}).items()):
        if not key.startswith("sagemaker_"):
            args += [f"--{key}", str(value)]
    return args


def run_job(
    description: dict,
    s3,
    work: Path,
    env: dict | None = None,
    python: str = sys.executable,
    timeout_s: float | None = None,
) -> dict:
    """Run one job to its end; returns the state change event."""
    name = description["TrainingJobName"]
    folder = Path(work) / name
    folder.mkdir(parents=True, exist_ok=True)
    record = {"job": name, "status": "InProgress", "started_at": time.time()}
    (folder / "job.json").write_text(json.dumps(record))
    child_env = {**os.environ, **(env or {})}
    child_env["TRAINING_JOB_NAME"] = name
    child_env["SM_MODEL_DIR"] = str(folder / "model")
    for channel in description.get("InputDataConfig", []):
        ch = channel["ChannelName"]
        dest = folder / "input" / "data" / ch
        dest.mkdir(parents=True, exist_ok=True)
        download_prefix(s3, channel["DataSource"]["S3DataSource"]["S3Uri"], dest)
        child_env[f"SM_CHANNEL_{ch.upper()}"] = str(dest)
    log_path = folder / "log.txt"
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(
                command_for(description, python),
                cwd=REPO,
                env=child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
        status = "Completed" if proc.returncode == 0 else "Failed"
        reason = "" if status == "Completed" else log_path.read_text()[-1024:]
    except subprocess.TimeoutExpired:
        status, reason = "Failed", f"ran past {timeout_s} s"
    record.update(status=status, ended_at=time.time(), failure_reason=reason)
    (folder / "job.json").write_text(json.dumps(record))
    return state_change_event(description, status, reason)


class LocalTrainingRunner:
    """Polls the emulator's SageMaker for new jobs and runs each once, in creation order."""

    def __init__(self, sagemaker, s3, work: Path, deliver: Callable[[dict], object], **run_kw):
        self.sagemaker, self.s3, self.work = sagemaker, s3, Path(work)
        self.deliver, self.run_kw = deliver, run_kw

    def pending_jobs(self) -> list[str]:
        names = []
        for page in self.sagemaker.get_paginator("list_training_jobs").paginate(
            SortBy="CreationTime", SortOrder="Ascending"
        ):
            names += [j["TrainingJobName"] for j in page["TrainingJobSummaries"]]
        return [n for n in names if not (self.work / n / "job.json").is_file()]

    def poll_once(self) -> list[dict]:
        events = []
        for name in self.pending_jobs():
            description = self.sagemaker.describe_training_job(TrainingJobName=name)
            event = run_job(description, self.s3, self.work, **self.run_kw)
            self.deliver(event)
            events.append(event)
        return events
