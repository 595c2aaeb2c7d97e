"""The AWS emulator (moto's WSGI app, in this process), the template's resources in it.

moto's app is served by werkzeug on the loopback interface only, behind `guard.Guard`: no
browser, only requests signed with the stack's own generated keys, presigned URLs checked as
S3 checks them, S3 writes atomic (guard.py says how and why).

S3 notifications are the stack's own (deliveries.py): the guard hands each created version
to `S3Routes`, which sends S3's event to the queue of every template notification that
routes it; moto's notifications are not configured. Bucket CORS rules are put into moto as
template.yaml declares them, and the guard reads them back from moto (`bucket_cors`).

State: moto keeps everything in memory, per process; a `Moto` starts empty (it resets what
an earlier one in the same process left). Every write it acknowledges is in the journal
(journal.py) first; `restore` puts the journal's state back at start, and `import_snapshot`
brings in the snapshot an older stack wrote at its graceful stop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from local_stack.deliveries import S3Routes, routes
from local_stack.guard import Credentials, Guard
from local_stack.journal import Folded, Journal
from local_stack.template import Stack

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class Moto:
    """moto's app on 127.0.0.1:port behind the guard, served from a thread of this process."""

    def __init__(
        self, port: int, credentials: Credentials, journal: Journal, region: str = "us-east-1"
    ):
        os.environ.setdefault("MOTO_DISABLE_GLOBAL_CORS", "true")  # and the guard strips them
        # An object over 64 KiB is kept in a temporary file, not in this process's memory
        # (moto's default keeps up to 5 MiB of each in memory: every image, every version).
        os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(64 * 1024))
        from moto.server import DomainDispatcherApplication, create_backend_app

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        self.port, self.credentials, self.region = port, credentials, region
        self.app = DomainDispatcherApplication(create_backend_app)
        self.journal = journal
        self.s3_routes: S3Routes | None = None  # set by `provision`
        self.guard = Guard(self.app, credentials, self._acknowledged, self.bucket_cors)
        self.server = None

    def _acknowledged(self, service, environ, body, answer, headers) -> None:
        """A write moto acknowledged, before its answer leaves: journaled, then each created
        version's S3 event sent (one that fails to send is owed, sent at the next start)."""
        created = self.journal.record(service, environ, body, answer, headers, self._read_version)
        for version in created if self.s3_routes is not None else []:
            try:
                self.s3_routes.created(version)
            except Exception as exc:
                log.warning("the S3 event of %s/%s is owed: %s", version.bucket, version.key, exc)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        from moto.server import MotoRequestHandler
        from werkzeug.serving import make_server
        from werkzeug.test import Client

        # moto's backends live in the process, not the server: a stack started before in
        # this process (tests) would leave its buckets, parameters and jobs in this one.
        # Reset through the app itself: its control API is not served over HTTP.
        Client(self.app).post("/moto-api/reset")
        try:
            self.server = make_server(
                LOOPBACK, self.port, self.guard, threaded=True, request_handler=MotoRequestHandler
            )
        except SystemExit as exc:  # werkzeug exits when it cannot bind; a library must not
            raise OSError(f"cannot listen on {LOOPBACK}:{self.port}") from exc
        threading.Thread(target=self.server.serve_forever, name="emulator", daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def client(self, service: str):
        return client(service, self.endpoint, self.region, self.credentials)

    # --- moto itself, from this process (the guard is for whoever reaches the port) ---------

    def _direct(self, service: str, method: str, path: str, **kwargs):
        from werkzeug.test import Client

        day = "20260101"
        scope = f"Credential=direct/{day}/{self.region}/{service}/aws4_request"
        headers = {"Authorization": f"AWS4-HMAC-SHA256 {scope}, SignedHeaders=host, Signature=0",
                   **kwargs.pop("headers", {})}  # fmt: skip
        return Client(self.app).open(path, method=method, headers=headers, **kwargs)

    def _read_version(self, bucket: str, key: str, version: str) -> tuple[bytes, list]:
        query = {"versionId": version} if version != "null" else {}
        answer = self._direct("s3", "GET", f"/{bucket}/{quote(key, safe='/')}", query_string=query)
        if answer.status_code != 200:
            raise RuntimeError(f"cannot read back s3://{bucket}/{key} {version}: {answer.status}")
        return answer.get_data(), list(answer.headers.items())

    def bucket_cors(self, bucket: str) -> list[dict]:
        """The bucket's CORS rules as moto holds them (GetBucketCors), [] when none."""
        answer = self._direct("s3", "GET", f"/{quote(bucket)}", query_string={"cors": ""})
        if answer.status_code != 200:
            return []
        rules = []
        for rule in ET.fromstring(answer.get_data()).iter():
            if rule.tag.rsplit("}", 1)[-1] != "CORSRule":
                continue
            fields: dict[str, list[str]] = {}
            for child in rule:
                fields.setdefault(child.tag.rsplit("}", 1)[-1], []).append(child.text or "")
            found = {name: fields.get(name[:-1], []) for name in _CORS_LISTS}
            if fields.get("MaxAgeSeconds"):
                found["MaxAgeSeconds"] = int(fields["MaxAgeSeconds"][0])
            rules.append(found)
        return rules

    def _put_ssm(self, target: str, body: str) -> None:
        kind = "application/x-amz-json-1.1"
        headers = {"X-Amz-Target": f"AmazonSSM.{target}", "Content-Type": kind}
        answer = self._direct("ssm", "POST", "/", data=body, headers=headers)
        if answer.status_code != 200:
            log.warning("replaying SSM %s failed: %s", target, answer.get_data()[:200])


_CORS_LISTS = ("AllowedOrigins", "AllowedMethods", "AllowedHeaders", "ExposeHeaders")


def client(service: str, endpoint: str, region: str, credentials: Credentials):
    """A boto3 client for the emulator, signed with the stack's keys. Every client of the
    local stack is built here (or through `Moto.client` and `stack_client`)."""
    config = Config(signature_version="s3v4", retries={"max_attempts": 2})
    return boto3.client(
        service, endpoint_url=endpoint, region_name=region, config=config, **credentials.as_kwargs()
    )


def stack_client(service: str, info: dict):
    """A client for a running stack, from its info (`inktex info --json`, stack.json)."""
    credentials = Credentials.load(Path(info["state_dir"]), create=False)
    return client(service, info["aws_endpoint"], info["region"], credentials)


# --- resources from the template -----------------------------------------------------------


def queue_arn(stack: Stack, name: str) -> str:
    return f"arn:aws:sqs:{stack.region}:{stack.account_id}:{name}"


def notification_queue(stack: Stack, function: str, event: str) -> str:
    return f"{stack.stack_name}-{function}-{event}"


def provision(stack: Stack, moto: Moto, secret_values: dict[str, str] | None = None) -> dict:
    """Create what template.yaml declares and moto can hold; idempotent (an existing bucket
    or parameter is left as it is: CloudFormation sets a parameter's first value only).
    Secrets get `secret_values[logical id]` (the local stack keeps them in its state folder,
    as CloudFormation would generate them once)."""
    ssm = moto.client("ssm")
    sqs = moto.client("sqs")
    events = moto.client("events")
    create_buckets(stack, moto)
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
        secretsmanager = moto.client("secretsmanager")
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

    # S3 notifications: one queue per (function, event), routed by the stack (deliveries.py).
    deliveries, routed = [], []
    for n in stack.s3_notifications():
        name = notification_queue(stack, n.function, n.name)
        url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        routed.append((n, url))
        deliveries.append({"source": "s3", "queue_url": url, "notification": n})
    moto.s3_routes = S3Routes(moto.client("sqs"), stack.region, routed)

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


# --- durable state (journal.py) ----------------------------------------------------------


def cors_rules(stack: Stack) -> dict[str, list[dict]]:
    """Each bucket's CORS rules (`CorsConfiguration.CorsRules` in template.yaml), by name,
    as S3's PutBucketCors takes them."""
    names = {"AllowedOrigins": "AllowedOrigins", "AllowedMethods": "AllowedMethods",
             "AllowedHeaders": "AllowedHeaders", "ExposedHeaders": "ExposeHeaders",
             "MaxAge": "MaxAgeSeconds", "Id": "ID"}  # fmt: skip
    rules = {}
    for logical_id, resource in stack.of_type("AWS::S3::Bucket").items():
        props = stack.resolve(resource.get("Properties") or {})
        found = (props.get("CorsConfiguration") or {}).get("CorsRules") or []
        if found:
            rules[stack.physical_id(logical_id)] = [
                {names[k]: int(v) if k == "MaxAge" else v for k, v in rule.items() if k in names}
                for rule in found
            ]
    return rules


def create_buckets(stack: Stack, moto: Moto) -> None:
    """The template's buckets, with versioning and CORS rules as declared (idempotent)."""
    s3 = moto.client("s3")
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for spec in stack.buckets().values():
        if spec["name"] not in existing:
            s3.create_bucket(Bucket=spec["name"])
        if spec["versioned"]:
            s3.put_bucket_versioning(
                Bucket=spec["name"], VersioningConfiguration={"Status": "Enabled"}
            )
    for name, rules in cors_rules(stack).items():
        s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": rules})


def restore(stack: Stack, moto: Moto) -> Folded:
    """The journal's state back into an empty emulator (buckets first), before anything is
    provisioned or served; what it restored, with the S3 and EventBridge events owed."""
    from moto.core.models import DEFAULT_ACCOUNT_ID

    create_buckets(stack, moto)
    s3 = moto.client("s3")
    notifications = stack.s3_notifications()

    def create_missing(buckets: set[str]) -> None:  # made through the API, not by the template
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for bucket in buckets - existing:
            s3.create_bucket(Bucket=bucket)

    def owed(bucket: str, key: str) -> bool:
        return any(routes(n, bucket, key) for n in notifications)

    return moto.journal.restore(DEFAULT_ACCOUNT_ID, moto._put_ssm, owed, create_missing)


def redeliver(moto: Moto, owed: Folded) -> dict[str, int]:
    """Queue again the S3 and EventBridge events that a function had not finished with when
    the stack stopped or died; how many of each. An EventBridge event goes on the bus
    again, where its rules route it (a new EventId, journaled as any other), then its old
    id is settled."""
    queued = {"s3": 0, "events": 0}
    if moto.s3_routes is not None:
        queued["s3"] = moto.s3_routes.owed(moto.client("s3"), owed.created)
    events = moto.client("events")
    for event in owed.events:  # at its own time: it expires as the first put would
        put = events.put_events(Entries=[{**event["entry"], "Time": event["t"]}])
        if put.get("FailedEntryCount"):
            log.warning("an owed event could not be put again: %s", put["Entries"])
            continue
        moto.journal.event_done(event["id"])
        queued["events"] += 1
    return queued


def import_snapshot(stack: Stack, moto: Moto, state_dir: Path) -> bool:
    """An older stack's snapshot (written at its graceful stop) into the emulator, through
    the API, so the journal records it; the snapshot is then set aside. False when none."""
    source = Path(state_dir) / "snapshot"
    if not (source / "manifest.json").is_file():
        return False
    manifest = json.loads((source / "manifest.json").read_text())
    s3 = moto.client("s3")
    ssm = moto.client("ssm")
    for name, objects in manifest["buckets"].items():
        with contextlib.suppress(ClientError):
            s3.create_bucket(Bucket=name)
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
    source.rename(source.with_name("snapshot.imported"))
    return True
