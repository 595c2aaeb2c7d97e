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


_DELETE_BATCH = 1000  # DeleteObjects' limit per call


def delete_versions(s3, bucket: str, versions: list[tuple[str, str]]) -> int:
    """Delete exact object versions, `[(key, version_id)]`, 1,000 per DeleteObjects call.

    Deleting by version id leaves no delete marker and no older version behind, which a plain
    delete of a versioned key would. A version already gone counts as deleted (S3 answers so).
    Raises rather than report data as deleted when S3 refuses any of them. Returns how many.
    """
    unique = sorted({(k, v) for k, v in versions if k and v})
    for start in range(0, len(unique), _DELETE_BATCH):
        objects = [{"Key": k, "VersionId": v} for k, v in unique[start : start + _DELETE_BATCH]]
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise RuntimeError(
                f"could not delete {len(errors)} object versions, e.g. {first.get('Key')}: "
                f"{first.get('Code')} {first.get('Message')}"
            )
    return len(unique)
