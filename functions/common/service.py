"""The service functions the handlers call: recognise, record, and the S3 drop.

They take their collaborators (store, model getter, S3 client) as arguments, so the unit
tests call them against moto, and the handlers only parse events and shape responses.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from functions.common import submissions, telemetry
from functions.common.store import ANONYMOUS, PredictionStore, check_owner, input_key, iso
from functions.common.store import prediction_id as new_prediction_id
from inktex.errors import InputError

log = logging.getLogger(__name__)


def create_prediction(
    submission: submissions.Submission,
    owner: str | None,
    recognizer,
    store: PredictionStore,
    source: str,
    now: datetime | None = None,
) -> dict:
    """Recognise a submission, store its input under `inputs/` and its record; the record."""
    now = now or datetime.now(UTC)
    result = submissions.recognize(recognizer, submission)  # bad input raises before storing
    pid = new_prediction_id(now)
    key, version = store.put_input(
        input_key(owner, pid, submission.ext), submission.data, submission.content_type
    )
    record = {
        "id": pid,
        "owner": owner,
        "source": source,
        "status": "ok",
        "created_at": iso(now),
        "input_key": key,
        "input_version": version,  # so a deletion names it (store.PredictionStore.delete)
        "input_kind": submission.kind,
        "input_content_type": submission.content_type,
        **result.to_dict(),
    }
    store.put_record(record)
    telemetry.prediction(record)
    return record


def owner_from_upload_key(key: str) -> str | None:
    """`uploads/<owner>/<name>` -> owner; `uploads/<name>` (an operator's drop) -> None."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] == "uploads" and parts[1] and parts[1] != ANONYMOUS:
        try:
            return check_owner(parts[1])
        except InputError:
            return None
    return None


@dataclass(frozen=True)
class UploadedObject:
    bucket: str
    key: str  # already URL-decoded
    version_id: str | None
    etag: str
    size: int
    event_time: datetime

    def prediction_id(self) -> str:
        """Derived from the object's identity, so a duplicate event names the same record."""
        identity = f"{self.bucket}/{self.key}#{self.version_id or self.etag}"
        digest = hashlib.sha256(identity.encode()).hexdigest()[:24]
        return new_prediction_id(self.event_time, digest)


def process_upload(
    obj: UploadedObject,
    s3,
    store: PredictionStore,
    get_recognizer: Callable[[], object],
    max_bytes: int,
) -> tuple[str, dict | None]:
    """Recognise one dropped object and record it once: ("created" | "duplicate", record).

    An unusable upload gets an error record (and no exception), so S3's retries never loop
    on it. A model that cannot be served raises: that is ours to fix, and a retry may work.
    """
    owner = owner_from_upload_key(obj.key)
    pid = obj.prediction_id()
    if store.exists(owner, pid):
        return "duplicate", None
    record = {
        "id": pid,
        "owner": owner,
        "source": "upload",
        "created_at": iso(obj.event_time),
        "input_key": obj.key,
        "source_key": obj.key,
        "source_version": obj.version_id,
        "source_etag": obj.etag,
    }
    try:
        if obj.size > max_bytes:
            raise InputError(f"the upload is {obj.size} bytes; the limit is {max_bytes}")
        extra = {"VersionId": obj.version_id} if obj.version_id else {}
        body = s3.get_object(Bucket=obj.bucket, Key=obj.key, **extra)["Body"].read()
        submission = submissions.from_object(body, obj.key)
        recognizer = get_recognizer()
        result = submissions.recognize(recognizer, submission)
        record.update(
            status="ok",
            input_kind=submission.kind,
            input_content_type=submission.content_type,
            **result.to_dict(),
        )
    except InputError as exc:
        log.warning("unusable upload %s: %s", obj.key, exc)
        record.update(status="error", error=str(exc))
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchKey", "NoSuchVersion", "404"):
            raise
        record.update(status="error", error=f"the upload is gone: {obj.key}")
    created = store.put_record(record, only_if_new=True)
    if created and record["status"] == "ok":
        telemetry.prediction(record)
    elif created:
        telemetry.error("UnusableUpload")
    return ("created" if created else "duplicate"), record if created else None
