"""Prediction records and their inputs in the data bucket.

Key layout (one prefix per kind, so S3 notifications and IAM can tell them apart):
- `uploads/<owner>/<name>`: photos dropped into S3 (presigned PUTs); these trigger the drop
  function, nothing else does;
- `inputs/<owner>/<id>.<ext>`: what the API received (image, strokes JSON, InkML);
- `predictions/<owner>/<id>.json`: one record per prediction;
- `feedback/`: corrections (the feedback loop's).
`<owner>` is the JWT subject, or `_anonymous` for `POST /recognize` and ownerless drops.

A prediction id starts with the *reversed* creation time in milliseconds (13 digits), then
24 random (or, for drops, content-derived) hex digits. S3 lists keys in ascending order, so
listing `predictions/<owner>/` gives that user's history newest first without reading anyone
else's, and the random part makes an id unguessable.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from functions.common.s3json import delete_versions, put_json
from inktex.errors import InputError

ANONYMOUS = "_anonymous"
_MAX_ERASE_ROUNDS = 20  # a record changes rarely: one round, two if a note races
_MAX_MS = 10**13 - 1  # reversed timestamps stay 13 digits until the year 2286
ID_PATTERN = r"^[0-9]{13}-[0-9a-f]{24}$"
_ID = re.compile(ID_PATTERN)
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,127}$")


class NotFound(InputError):
    status = 404


def check_owner(owner: str | None) -> str:
    """The key segment for an owner; refuses anything that could escape its prefix."""
    if owner is None:
        return ANONYMOUS
    if not _OWNER.match(owner):
        raise InputError(f"owner id {owner!r} cannot be used in a key")
    return owner


def prediction_id(created: datetime, suffix: str | None = None) -> str:
    reversed_ms = _MAX_MS - int(created.timestamp() * 1000)
    return f"{reversed_ms:013d}-{suffix or secrets.token_hex(12)}"


def is_prediction_id(text: str) -> bool:
    return bool(_ID.match(text))


def record_key(owner: str | None, pid: str) -> str:
    return f"predictions/{check_owner(owner)}/{pid}.json"


def input_key(owner: str | None, pid: str, ext: str) -> str:
    return f"inputs/{check_owner(owner)}/{pid}{ext}"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PredictionStore:
    def __init__(self, s3, bucket: str):
        self.s3, self.bucket = s3, bucket

    def put_input(self, key: str, data: bytes, content_type: str) -> tuple[str, str]:
        """Store an input once; (its key, its S3 version id), which the record keeps."""
        answer = self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
        )
        return key, answer.get("VersionId") or ""

    def put_record(self, record: dict, only_if_new: bool = False) -> bool:
        """Write a record; with `only_if_new`, False when one exists already (a duplicate)."""
        key = record_key(record["owner"], record["id"])
        return put_json(self.s3, self.bucket, key, record, only_if_new)

    def exists(self, owner: str | None, pid: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=record_key(owner, pid))
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def get_record(self, owner: str | None, pid: str) -> dict:
        if not is_prediction_id(pid):
            raise NotFound(f"no prediction {pid!r}: ids look like 8234567890123-<24 hex digits>")
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=record_key(owner, pid))["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise NotFound(f"no prediction {pid} in your history") from exc
            raise
        return json.loads(body.read())

    def list_records(
        self, owner: str | None, limit: int = 20, after: str | None = None
    ) -> tuple[list[dict], str | None]:
        """One page of an owner's records, newest first, and the cursor for the next page."""
        prefix = f"predictions/{check_owner(owner)}/"
        kwargs = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": limit}
        if after:
            if not is_prediction_id(after):
                raise InputError("the cursor is not one this API gave out: start again without it")
            kwargs["StartAfter"] = f"{prefix}{after}.json"
        page = self.s3.list_objects_v2(**kwargs)
        records = []
        for obj in page.get("Contents", []):
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"]
            except ClientError as exc:
                if _missing(exc):
                    continue  # deleted between the listing and the read
                raise
            records.append(json.loads(body.read()))
        cursor = records[-1]["id"] if records and page.get("IsTruncated") else None
        return records, cursor

    def note_feedback(self, owner: str | None, pid: str, note: dict) -> bool:
        """Record on a prediction the feedback it got (`record["feedback"]`, the latest wins).

        A read-modify-write guarded by the record's ETag (`If-Match`): a record deleted
        meanwhile is not brought back, and a concurrent change is not overwritten. False
        when the record is gone or changed: the feedback itself is stored either way. The
        new version names the one it replaces (`previous_versions`), so a deletion can
        remove every version by id.
        """
        key = record_key(owner, pid)
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=key)
            record = json.loads(obj["Body"].read())
            earlier = [*record.get("previous_versions", []), obj.get("VersionId") or ""]
            record.update(feedback=note, previous_versions=[v for v in earlier if v])
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(record).encode(),
                ContentType="application/json",
                IfMatch=obj["ETag"],
            )
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if _missing(exc) or code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def get_input(self, record: dict) -> tuple[bytes, str]:
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=record["input_key"])
        except ClientError as exc:
            if _missing(exc):
                raise NotFound(f"the input of prediction {record['id']} is gone") from exc
            raise
        return obj["Body"].read(), obj.get("ContentType", "application/octet-stream")

    def delete(self, owner: str | None, pid: str) -> None:
        """Erase a record and its input, every version (the buckets are versioned), by the
        version ids the record holds: a fixed number of calls, whatever the bucket holds.

        Deleting a record's newest version would bring back the one before, so each record
        names its earlier versions (`previous_versions`). A record that changed meanwhile (a
        feedback note), or one written before records named their versions, is still there
        after a round: the next round deletes what it names, until the key is gone.
        """
        owner = check_owner(owner)
        if not is_prediction_id(pid):
            raise NotFound(f"no prediction {pid!r}: ids look like 8234567890123-<24 hex digits>")
        key = record_key(owner, pid)
        for round_ in range(_MAX_ERASE_ROUNDS):
            versions = self.record_versions(owner, key)
            if versions is None:
                if round_ == 0:
                    raise NotFound(f"no prediction {pid} in your history")
                return
            delete_versions(self.s3, self.bucket, versions)
        raise RuntimeError(f"prediction {pid} kept changing while it was erased: try again")

    def record_versions(self, owner: str, key: str) -> list[tuple[str, str]] | None:
        """The (key, version id) pairs a record names: its current and earlier versions, and
        its input's version (None when there is no such record)."""
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        record = json.loads(obj["Body"].read())
        names = [obj.get("VersionId"), *record.get("previous_versions", [])]
        versions = [(key, v) for v in names if v]
        source = record.get("input_key", "")
        if source.startswith((f"inputs/{owner}/", f"uploads/{owner}/")):
            version = record.get("input_version") or record.get("source_version")
            version = version or self.current_version(source)  # records that predate it
            versions += [(source, version)] if version else []
        return versions

    def current_version(self, key: str) -> str:
        """The version id of a key's current object ("" when there is none)."""
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key).get("VersionId") or ""
        except ClientError as exc:
            if _missing(exc):
                return ""
            raise


def _missing(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound")
