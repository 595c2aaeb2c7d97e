"""The AWS emulator (moto server, in this process), the template's resources in it, snapshots.

Two fidelity fixes on top of moto, applied once per process when `Moto` is built:

- Conditional writes are atomic. moto checks `If-None-Match` / `If-Match` and then writes, as
  two steps; two concurrent `PutObject(IfNoneMatch="*")` calls could both succeed. Here every
  S3 object write or delete (put, copy, delete, completing a multipart upload) runs under one
  lock, so check-then-write is atomic, as it is in S3. Claims built on conditional writes
  (the feedback loop's batch claim) can be tested for races against the local stack.
- S3 event notifications encode keys as S3 does (`/` kept, a space as `+`) and carry the
  fields that S3 sends and moto leaves out (`versionId`, `sequencer`, `userIdentity`,
  `requestParameters`, `responseElements`), so handlers see the real shape of
  `events/s3_upload.json`.

State: moto keeps everything in memory, per process; a `Moto` starts empty (it resets what
an earlier one in the same process left). `snapshot` writes every bucket's current objects
(with content type and metadata) and every SSM parameter's history to the state directory;
`restore` puts them back. Object version ids and timestamps are new after a restore.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import threading
import urllib.request
from pathlib import Path
from urllib.parse import quote, quote_plus

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from local_stack.template import Stack

log = logging.getLogger(__name__)

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_write_lock = threading.RLock()
_patched = False


def _locked(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _write_lock:
            return method(*args, **kwargs)

    return wrapper


def _patch_moto() -> None:
    global _patched
    if _patched:
        return
    from moto.s3 import notifications
    from moto.s3.responses import S3Response

    for name in ("_key_response_put", "_key_response_delete", "_key_response_post"):
        setattr(S3Response, name, _locked(getattr(S3Response, name)))

    original = notifications._get_s3_event

    def full_event(event_name, bucket, key, notification_id):
        event = original(event_name, bucket, key, notification_id)
        for record in event["Records"]:
            record["userIdentity"] = {"principalId": "AWS:LOCALSTACK"}
            record["requestParameters"] = {"sourceIPAddress": "127.0.0.1"}
            record["responseElements"] = {
                "x-amz-request-id": "LOCAL0000000000",
                "x-amz-id-2": "LOCAL/inktex",
            }
            obj = record["s3"]["object"]
            obj["key"] = quote_plus(key.name, safe="/")  # as S3 encodes it: "a/b+c.png"
            obj["sequencer"] = f"{int(key.last_modified.timestamp() * 1e6):018X}"
            if getattr(key, "version_id", None) and key.version_id != "null":
                obj["versionId"] = key.version_id
            record["s3"]["bucket"]["ownerIdentity"] = {"principalId": "LOCALSTACK"}
        return event

    notifications._get_s3_event = full_event
    _patched = True


class Moto:
    """moto's server on host:port, in a thread of this process."""

    def __init__(self, host: str, port: int):
        from moto.server import ThreadedMotoServer

        _patch_moto()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        self.host, self.port = host, port
        self.server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self.server.start()
        # moto's backends live in the process, not the server: a stack started before in
        # this process (tests) would leave its buckets, parameters and jobs in this one
        reset = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(reset, timeout=30).close()

    def stop(self) -> None:
        self.server.stop()


def client(service: str, endpoint: str, region: str):
    config = Config(signature_version="s3v4", retries={"max_attempts": 2})
    return boto3.client(
        service, endpoint_url=endpoint, region_name=region, config=config, **CREDENTIALS
    )


# --- resources from the template -----------------------------------------------------------


def queue_arn(stack: Stack, name: str) -> str:
    return f"arn:aws:sqs:{stack.region}:{stack.account_id}:{name}"


def notification_queue(stack: Stack, function: str, event: str) -> str:
    return f"{stack.stack_name}-{function}-{event}"


def provision(stack: Stack, endpoint: str, secret_values: dict[str, str] | None = None) -> dict:
    """Create what template.yaml declares and moto can hold; idempotent (an existing bucket
    or parameter is left as it is: CloudFormation sets a parameter's first value only).
    Secrets get `secret_values[logical id]` (the local stack keeps them in its state folder,
    as CloudFormation would generate them once)."""
    s3 = client("s3", endpoint, stack.region)
    ssm = client("ssm", endpoint, stack.region)
    sqs = client("sqs", endpoint, stack.region)
    events = client("events", endpoint, stack.region)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for spec in stack.buckets().values():
        if spec["name"] not in existing:
            s3.create_bucket(Bucket=spec["name"])
        if spec["versioned"]:
            s3.put_bucket_versioning(
                Bucket=spec["name"], VersioningConfiguration={"Status": "Enabled"}
            )
    for spec in stack.ssm_parameters().values():
        try:
            ssm.get_parameter(Name=spec["name"])
        except ClientError:
            ssm.put_parameter(
                Name=spec["name"],
                Value=spec["value"],
                Type=spec["type"],
                Description=spec["description"][:1024],
            )
    if secret_values:
        secretsmanager = client("secretsmanager", endpoint, stack.region)
        for logical_id, spec in stack.secrets().items():
            if logical_id not in secret_values:
                continue
            try:
                secretsmanager.create_secret(
                    Name=spec["name"],
                    Description=spec["description"],
                    SecretString=secret_values[logical_id],
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceExistsException":
                    raise
                secretsmanager.put_secret_value(
                    SecretId=spec["name"], SecretString=secret_values[logical_id]
                )
    queues = {}
    for name in stack.queues().values():
        queues[name] = sqs.create_queue(QueueName=name)["QueueUrl"]

    # S3 -> SQS notifications, one queue per (function, event), filters as declared.
    by_bucket: dict[str, list] = {}
    deliveries = []
    for n in stack.s3_notifications():
        name = notification_queue(stack, n.function, n.name)
        url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        config = {"Id": f"{n.function}-{n.name}", "QueueArn": queue_arn(stack, name)}
        config["Events"] = n.events
        if n.filter_rules:
            config["Filter"] = {"Key": {"FilterRules": n.filter_rules}}
        by_bucket.setdefault(n.bucket, []).append(config)
        deliveries.append({"source": "s3", "queue_url": url, "notification": n})
    for bucket, configs in by_bucket.items():
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": configs}
        )
        _drain_test_events(sqs, [d["queue_url"] for d in deliveries])

    # EventBridge rules -> SQS targets on the default bus.
    for rule in stack.event_rules():
        name = notification_queue(stack, rule.function, rule.name)
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        events.put_rule(Name=name, EventPattern=json.dumps(rule.pattern), State="ENABLED")
        events.put_targets(Rule=name, Targets=[{"Id": "function", "Arn": queue_arn(stack, name)}])
        deliveries.append({"source": "events", "queue_url": url, "rule": rule})
    return {"queues": queues, "deliveries": deliveries}


def put_event(events, event: dict) -> None:
    """Put an event shaped as EventBridge delivers it (e.g. SageMaker's "Training Job State
    Change", from the local training runner) on the default bus: the rules `provision` made
    route it to their functions' queues, as EventBridge routes AWS service events."""
    response = events.put_events(
        Entries=[
            {
                "Source": event["source"],
                "DetailType": event["detail-type"],
                "Detail": json.dumps(event["detail"]),
                "Resources": event.get("resources", []),
            }
        ]
    )
    if response.get("FailedEntryCount"):
        raise RuntimeError(f"EventBridge refused the event: {response['Entries']}")


def _drain_test_events(sqs, urls: list[str]) -> None:
    """S3 sends an `s3:TestEvent` when notifications are configured; Lambda never sees it."""
    for url in urls:
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            test = [m for m in messages if '"s3:TestEvent"' in m["Body"]]
            for m in test:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            for m in messages:
                if m not in test:  # not ours to take: make it visible again
                    sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                    )
            if not test:
                break


# --- snapshots ----------------------------------------------------------------------------


def snapshot(stack: Stack, endpoint: str, state_dir: Path) -> Path:
    """Write buckets and parameters under state_dir/snapshot (atomically: a new folder, then
    renamed over the old one)."""
    s3 = client("s3", endpoint, stack.region)
    ssm = client("ssm", endpoint, stack.region)
    target = Path(state_dir) / "snapshot"
    staging = Path(state_dir) / "snapshot.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    manifest: dict = {"buckets": {}, "parameters": {}}
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        objects = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                key = item["Key"]
                head = s3.head_object(Bucket=name, Key=key)
                path = staging / "s3" / name / quote(key, safe="")
                path.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(name, key, str(path))
                objects.append(
                    {
                        "key": key,
                        "file": path.name,
                        "content_type": head.get("ContentType", "binary/octet-stream"),
                        "metadata": head.get("Metadata", {}),
                    }
                )
        manifest["buckets"][name] = objects
    for page in ssm.get_paginator("describe_parameters").paginate():
        for p in page["Parameters"]:
            history = []
            for hp in ssm.get_paginator("get_parameter_history").paginate(Name=p["Name"]):
                history += [
                    {"value": h["Value"], "type": h["Type"], "description": h.get("Description")}
                    for h in hp["Parameters"]
                ]
            manifest["parameters"][p["Name"]] = history
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    old = Path(state_dir) / "snapshot.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def restore(stack: Stack, endpoint: str, state_dir: Path) -> bool:
    """Put a snapshot back into an empty emulator; False when there is none."""
    source = Path(state_dir) / "snapshot"
    if not (source / "manifest.json").is_file():
        return False
    manifest = json.loads((source / "manifest.json").read_text())
    s3 = client("s3", endpoint, stack.region)
    ssm = client("ssm", endpoint, stack.region)
    versioned = {spec["name"] for spec in stack.buckets().values() if spec["versioned"]}
    for name, objects in manifest["buckets"].items():
        s3.create_bucket(Bucket=name)
        if name in versioned:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        for obj in objects:
            with open(source / "s3" / name / obj["file"], "rb") as f:
                s3.put_object(
                    Bucket=name,
                    Key=obj["key"],
                    Body=f,
                    ContentType=obj["content_type"],
                    Metadata=obj["metadata"],
                )
    for name, history in manifest["parameters"].items():
        for h in history:
            kwargs = {"Description": h["description"]} if h.get("description") else {}
            ssm.put_parameter(Name=name, Value=h["value"], Type=h["type"], Overwrite=True, **kwargs)
    return True
