"""Runs the training jobs that the local stack's emulator accepted, as real processes.

The local stack's emulator (moto) records a `CreateTrainingJob` and reports it Completed at
once; nothing runs. This runner does what SageMaker would: for each new job it downloads
the job's input channels from S3 into `<work>/<job>/input/data/<channel>/`, runs the
job's program (its `sagemaker_program`, model_export/finetune_job.py, as a module; CPU)
with the SageMaker environment (`SM_CHANNEL_*`, `SM_MODEL_DIR`, the hyperparameters as
`--key value`), keeps the job's true status and log under `<work>/<job>/`, and when it
ends hands the same "SageMaker Training Job State Change" event that EventBridge would
deliver to `deliver` (the local stack puts it on the emulator's EventBridge bus, whose rule
delivers it to the training-events function). `inktex jobs` reads `<work>/*/job.json`.

`job.json` records the job's true status, the event it ended with and whether that event was
delivered. A job that was running when the stack stopped is killed and ends "Stopped"; an
event that could not be delivered (the stack was going down) is delivered when the runner
next starts (`recover`), so the job's feedback batch is never left claimed by a dead job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
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


# The retraining job's program when a request names none (functions/common/retraining.py
# names it in `sagemaker_program`, as script mode needs).
DEFAULT_PROGRAM = "model_export/finetune_job.py"


def command_for(description: dict, python: str = sys.executable) -> list[str]:
    """The program and its arguments, as SageMaker's script mode would run them: the
    `sagemaker_program` (a path in the repository, run as its module) with every other
    hyperparameter as `--key value`."""
    hyper = description.get("HyperParameters", {})
    program = json.loads(hyper["sagemaker_program"]) if "sagemaker_program" in hyper else ""
    module = (program or DEFAULT_PROGRAM).removesuffix(".py").replace("/", ".")
    args = [python, "-m", module]
    for key, value in sorted(hyper.items()):
        if not key.startswith("sagemaker_"):
            args += [f"--{key}", str(value)]
    return args


def _write_record(folder: Path, record: dict) -> None:
    tmp = folder / "job.json.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(folder / "job.json")


def _description_facts(description: dict) -> dict:
    """What `state_change_event` needs, JSON-safe (kept in job.json for `recover`)."""
    return {
        "TrainingJobName": description["TrainingJobName"],
        "TrainingJobArn": description.get("TrainingJobArn", ""),
        "HyperParameters": description.get("HyperParameters", {}),
        "OutputDataConfig": description.get("OutputDataConfig", {"S3OutputPath": ""}),
    }


def run_job(
    description: dict,
    s3,
    work: Path,
    env: dict | None = None,
    python: str = sys.executable,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
) -> dict:
    """Run one job to its end (or until `stop` is set: then it ends Stopped); returns the
    state change event, also kept in `<work>/<job>/job.json`."""
    name = description["TrainingJobName"]
    folder = Path(work) / name
    folder.mkdir(parents=True, exist_ok=True)
    if timeout_s is None:
        timeout_s = (description.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    record = {
        "job": name,
        "status": "InProgress",
        "started_at": time.time(),
        "log": str(folder / "log.txt"),
        "description": _description_facts(description),
        "delivered": False,
    }
    _write_record(folder, record)
    child_env = {**os.environ, **(env or {})}
    child_env["TRAINING_JOB_NAME"] = name
    child_env["SM_MODEL_DIR"] = str(folder / "model")
    log_path = folder / "log.txt"
    status, reason = "Completed", ""
    with open(log_path, "w") as log:
        try:
            for channel in description.get("InputDataConfig", []):
                ch = channel["ChannelName"]
                dest = folder / "input" / "data" / ch
                dest.mkdir(parents=True, exist_ok=True)
                uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
                count = download_prefix(s3, uri, dest)
                log.write(f"channel {ch}: {count} objects from {uri}\n")
                child_env[f"SM_CHANNEL_{ch.upper()}"] = str(dest)
        except Exception as exc:  # SageMaker fails a job whose input cannot be read
            status, reason = "Failed", f"ClientError: reading the input channels: {exc}"
            log.write(reason + "\n")
        if status == "Completed":
            log.flush()
            status, reason = _run_program(
                command_for(description, python), child_env, log, log_path, timeout_s, stop
            )
    event = state_change_event(description, status, reason)
    record.update(status=status, ended_at=time.time(), failure_reason=reason, event=event)
    _write_record(folder, record)
    return event


def _run_program(command, env, log, log_path: Path, timeout_s, stop) -> tuple[str, str]:
    try:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
    except OSError as exc:
        return "Failed", f"AlgorithmError: {exc}"
    deadline = time.monotonic() + timeout_s if timeout_s else None
    while proc.poll() is None:
        if stop is not None and stop.is_set():
            proc.kill()
            proc.wait()
            return "Stopped", "the local stack stopped while the job ran"
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return "Failed", f"MaxRuntimeExceeded: ran past {timeout_s} s"
        time.sleep(0.2)
    if proc.returncode == 0:
        return "Completed", ""
    log.flush()
    tail = log_path.read_text(errors="replace")[-1000:]
    return "Failed", f"AlgorithmError: exit code {proc.returncode}\n{tail}"


def read_jobs(work: Path) -> list[dict]:
    """The local jobs' records (job.json), oldest first: what `inktex jobs` shows."""
    records = []
    for path in Path(work).glob("*/job.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: r.get("started_at", 0))


class LocalTrainingRunner:
    """Polls the emulator's SageMaker for new jobs and runs each once, in creation order.

    `start()` runs it in a thread that polls every `interval_s`; `stop()` kills a running
    job (it ends Stopped) and ends the thread. `deliver(event)` hands each end-of-job event
    on (the local stack: `PutEvents` to the emulator's EventBridge)."""

    def __init__(
        self,
        sagemaker,
        s3,
        work: Path,
        deliver: Callable[[dict], object],
        interval_s: float = 1.0,
        **run_kw,
    ):
        self.sagemaker, self.s3, self.work = sagemaker, s3, Path(work)
        self.deliver, self.run_kw, self.interval_s = deliver, run_kw, interval_s
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def pending_jobs(self) -> list[str]:
        names = []
        for page in self.sagemaker.get_paginator("list_training_jobs").paginate(
            SortBy="CreationTime", SortOrder="Ascending"
        ):
            names += [j["TrainingJobName"] for j in page["TrainingJobSummaries"]]
        return [n for n in names if not (self.work / n / "job.json").is_file()]

    def _deliver(self, name: str, event: dict) -> bool:
        try:
            self.deliver(event)
        except Exception as exc:  # the stack is going down: `recover` delivers it next time
            print(f"local training: could not deliver the end of {name}: {exc}", file=sys.stderr)
            return False
        path = self.work / name / "job.json"
        record = json.loads(path.read_text())
        record["delivered"] = True
        _write_record(path.parent, record)
        return True

    def poll_once(self) -> list[dict]:
        events = []
        for name in self.pending_jobs():
            if self.stopping.is_set():
                break
            description = self.sagemaker.describe_training_job(TrainingJobName=name)
            event = run_job(description, self.s3, self.work, stop=self.stopping, **self.run_kw)
            if not self.stopping.is_set():
                self._deliver(name, event)
            events.append(event)
        return events

    def recover(self) -> list[dict]:
        """Deliver what a previous life of the stack left undelivered: the end of each job
        that ended then, and a "Stopped" for each that was running when it went away."""
        events = []
        for record in read_jobs(self.work):
            if record.get("delivered") or "description" not in record:
                continue
            event = record.get("event")
            if record.get("status") == "InProgress" or event is None:
                reason = "the local stack stopped while the job ran"
                event = state_change_event(record["description"], "Stopped", reason)
                record.update(status="Stopped", ended_at=time.time(), failure_reason=reason)
                record["event"] = event
                _write_record(self.work / record["job"], record)
            if self._deliver(record["job"], event):
                events.append(event)
        return events

    def _loop(self) -> None:
        self.recover()
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # the emulator is going away, or a transient error
                if not self.stopping.is_set():
                    print(f"local training: polling failed: {exc}", file=sys.stderr)
            self.stopping.wait(self.interval_s)

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="local-training", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
