"""`DELETE /me`: erase everything a user gave InkTeX that no training has used yet.

Erased, every version (the data bucket is versioned, so a plain delete would only hide):
- `predictions/<owner>/`: the history;
- `inputs/<owner>/` and `uploads/<owner>/`: what the user sent (images, strokes, InkML);
- `feedback/pending/<tag>*` and `feedback/held/<tag>*`: corrections not claimed by a batch
  (`<tag>` is `feedback.owner_tag(owner)`, the first digits of each of the owner's ids).
Kept: corrections a batch has claimed (`feedback/used/`, `feedback/batches/`). A model was
trained on them and its lineage cites the batch; docs/security.md says so to users. Their
count is reported as `kept_in_training`.

A batch claimed while this runs finds the erased items gone and trains without them
(`retraining.FeedbackBatches.finish` skips what it cannot read).
"""

from __future__ import annotations

from functions.common.feedback import HELD, PENDING, USED, owner_tag
from functions.common.store import check_owner

_DELETE_BATCH = 1000  # DeleteObjects' limit per call


def erase_user(s3, bucket: str, owner: str) -> dict:
    """Erase a user's data (module docstring); counts of objects erased, by kind."""
    owner = check_owner(owner)  # refuses anything that could widen a prefix
    tag = owner_tag(owner)
    erased = {
        "predictions": _erase_prefix(s3, bucket, f"predictions/{owner}/"),
        "inputs": _erase_prefix(s3, bucket, f"inputs/{owner}/")
        + _erase_prefix(s3, bucket, f"uploads/{owner}/"),
        "feedback": _erase_prefix(s3, bucket, f"{PENDING}{tag}")
        + _erase_prefix(s3, bucket, f"{HELD}{tag}"),
    }
    kept = _count(s3, bucket, f"{USED}{tag}")
    return {"erased": erased, "kept_in_training": kept}


def _erase_prefix(s3, bucket: str, prefix: str) -> int:
    """Delete every version and delete marker under `prefix`; the number of current objects
    (old versions, such as a claimed correction's pending/ copy, go too, uncounted)."""
    keys: set[str] = set()
    batch: list[dict] = []
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        keys.update(v["Key"] for v in page.get("Versions", []) if v.get("IsLatest"))
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            batch.append({"Key": entry["Key"], "VersionId": entry["VersionId"]})
            if len(batch) == _DELETE_BATCH:
                _delete(s3, bucket, batch)
                batch = []
    if batch:
        _delete(s3, bucket, batch)
    return len(keys)


def _delete(s3, bucket: str, objects: list[dict]) -> None:
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    errors = answer.get("Errors") or []
    if errors:  # raise rather than report a user's data as erased when it is not
        first = errors[0]
        raise RuntimeError(
            f"could not erase {len(errors)} objects, e.g. {first.get('Key')}: "
            f"{first.get('Code')} {first.get('Message')}"
        )


def _count(s3, bucket: str, prefix: str) -> int:
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        count += len(page.get("Contents", []))
    return count
