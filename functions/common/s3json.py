"""JSON objects in S3, with the conditional writes that make claims and records idempotent."""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

# What S3 answers when a conditional write loses: the object exists, or a racing write won.
CONDITION_FAILED = ("PreconditionFailed", "ConditionalRequestConflict")


def put_json(s3, bucket: str, key: str, value: dict, only_if_new: bool = False) -> bool:
    """Write `value` at `key`; with `only_if_new` (IfNoneMatch='*'), False when it exists."""
    extra = {"IfNoneMatch": "*"} if only_if_new else {}
    try:
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(value).encode(),
            ContentType="application/json",
            **extra,
        )
    except ClientError as exc:
        if only_if_new and exc.response["Error"]["Code"] in CONDITION_FAILED:
            return False
        raise
    return True
