"""`DELETE /me`: erase everything a user gave InkTeX that no training has used yet.

Erased, every version (the data bucket is versioned, so a plain delete would only hide):
- `predictions/<owner>/`: the history, each record with the input it names;
- `inputs/<owner>/` and `uploads/<owner>/`: what the user sent (images, strokes, InkML);
- `feedback/pending/<tag>*` and `feedback/held/<tag>*`: corrections not claimed by a batch
  (`<tag>` is `feedback_store.owner_tag(owner)`, the first digits of each of the owner's ids).
Kept: corrections a batch has claimed (`feedback/used/`, `feedback/batches/`). A model was
trained on them and its lineage cites the batch; docs/security.md says so to users. Their
count is reported as `kept_in_training`.

It lists the current objects under the user's own prefixes (never the bucket's versions) and
deletes the exact versions each one names: a record its earlier versions and its input's, a
vote its earlier versions, an input or upload (written once) its own. The cost is the
user's data, not the bucket's. What is still there after a round (an object written
meanwhile) goes in the next.

A batch claimed while this runs finds the erased items gone and trains without them
(`retraining.FeedbackBatches.finish` skips what it cannot read).
"""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from functions.common.feedback_store import HELD, PENDING, USED, owner_tag
from functions.common.s3json import delete_versions
from functions.common.store import PredictionStore, check_owner

_ROUNDS = 5


def erase_user(s3, bucket: str, owner: str) -> dict:
    """Erase a user's data (module docstring); counts of objects erased, by kind."""
    owner = check_owner(owner)  # refuses anything that could widen a prefix
    tag = owner_tag(owner)
    kinds = {  # inputs first: a record's deletion takes its input along, uncounted
        "inputs": [f"inputs/{owner}/", f"uploads/{owner}/"],
        "feedback": [f"{PENDING}{tag}", f"{HELD}{tag}"],
        "predictions": [f"predictions/{owner}/"],
    }
    erased = {"predictions": 0, "inputs": 0, "feedback": 0}
    store = PredictionStore(s3, bucket)
    for _ in range(_ROUNDS):
        found = False
        for kind, prefixes in kinds.items():
            for prefix in prefixes:
                keys = _current_keys(s3, bucket, prefix)
                found = found or bool(keys)
                versions = [v for key in keys for v in _named_versions(store, owner, key)]
                delete_versions(s3, bucket, versions)
                erased[kind] += len(keys)
        if not found:
            break
    else:
        raise RuntimeError("your data kept changing while it was erased: try again")
    kept = len(_current_keys(s3, bucket, f"{USED}{tag}"))
    return {"erased": erased, "kept_in_training": kept}


def _current_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return keys


def _named_versions(store: PredictionStore, owner: str, key: str) -> list[tuple[str, str]]:
    """The versions to delete for one current object: what a record or a vote names, or an
    input's current version."""
    if key.startswith("predictions/"):
        return store.record_versions(owner, key) or []
    if key.startswith("feedback/"):
        try:
            obj = store.s3.get_object(Bucket=store.bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                return []
            raise
        item = json.loads(obj["Body"].read())
        names = [obj.get("VersionId"), *item.get("previous_versions", [])]
        return [(key, v) for v in names if v]
    version = store.current_version(key)
    return [(key, version)] if version else []
