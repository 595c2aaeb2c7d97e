"""What the emulator delivers to functions: S3 notifications, built here as S3 sends them.

moto can send S3 notifications itself, but its event leaves out fields that S3 sends and the
handlers read (`versionId`, `sequencer`, `userIdentity`, `requestParameters`,
`responseElements`) and encodes keys otherwise; changing that meant patching moto's private
`_get_s3_event`. The guard sees every write moto acknowledges anyway (the journal records
it), so the stack routes a created object itself: each S3 notification of template.yaml
whose events and key filters match gets S3's event (`events/s3_upload.json`'s shape) in its
queue. A version whose event was owed when the stack stopped or died is routed again at the
next start, from the restored object (`S3Routes.owed`, journal.py keeps the debt).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from urllib.parse import quote_plus

from local_stack.template import S3Notification


@dataclass(frozen=True)
class Created:
    """An object version S3 acknowledged: what its event says."""

    bucket: str
    key: str
    version: str  # "null" in an unversioned bucket
    size: int
    etag: str
    modified: dt.datetime
    event: str = "ObjectCreated:Put"  # Put, Post, Copy or CompleteMultipartUpload


def routes(n: S3Notification, bucket: str, key: str, event: str = "ObjectCreated:Put") -> bool:
    """Whether notification `n` routes `event` for an object created at bucket/key."""
    name = f"s3:{event}"
    wanted = any(e == name or (e.endswith("*") and name.startswith(e[:-1])) for e in n.events)
    if n.bucket != bucket or not wanted:
        return False
    for rule in n.filter_rules:
        kind, value = rule["Name"].lower(), rule["Value"]
        if (kind == "prefix" and not key.startswith(value)) or (
            kind == "suffix" and not key.endswith(value)
        ):
            return False
    return True


def s3_event(created: Created, configuration_id: str, region: str) -> dict:
    """S3's notification for one created version
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html)."""
    when = created.modified.astimezone(dt.UTC)
    obj = {
        "key": quote_plus(created.key, safe="/"),  # as S3 encodes it: "a/b+c.png"
        "size": created.size,
        "eTag": created.etag.strip('"'),
        "sequencer": f"{int(when.timestamp() * 1e6):018X}",
    }
    if created.version != "null":
        obj["versionId"] = created.version
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "eventName": created.event,
        "userIdentity": {"principalId": "AWS:LOCALSTACK"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "LOCAL0000000000", "x-amz-id-2": "LOCAL/inktex"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {
                "name": created.bucket,
                "ownerIdentity": {"principalId": "LOCALSTACK"},
                "arn": f"arn:aws:s3:::{created.bucket}",
            },
            "object": obj,
        },
    }
    return {"Records": [record]}


class S3Routes:
    """The template's S3 notifications, each with its queue; `created` sends a new
    version's event to every queue whose notification routes it."""

    def __init__(self, sqs, region: str, queues: list[tuple[S3Notification, str]]):
        self.sqs, self.region, self.queues = sqs, region, queues

    def routed(self, bucket: str, key: str) -> bool:
        return any(routes(n, bucket, key) for n, _ in self.queues)

    def created(self, created: Created) -> int:
        sent = 0
        for n, queue_url in self.queues:
            if routes(n, created.bucket, created.key, created.event):
                event = s3_event(created, f"{n.function}-{n.name}", self.region)
                self.sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(event))
                sent += 1
        return sent

    def owed(self, s3, pending: list[tuple[str, str, str]]) -> int:
        """Route again the versions whose events a function had not finished with when the
        stack stopped or died (restored by then); the number of events sent."""
        sent = 0
        for bucket, key, version in pending:
            kwargs = {} if version == "null" else {"VersionId": version}
            head = s3.head_object(Bucket=bucket, Key=key, **kwargs)
            sent += self.created(
                Created(
                    bucket, key, version, head["ContentLength"], head["ETag"], head["LastModified"]
                )  # fmt: skip
            )
        return sent
