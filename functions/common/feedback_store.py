"""Where corrections live: one vote per (user, prediction), one S3 object per vote.

Key layout in the data bucket:
- `feedback/pending/<id>.json`: a consented, unsuspicious vote; what retraining counts;
- `feedback/held/<id>.json`: kept (review, online accuracy), never trained on;
- `feedback/used/<id>.json`: the marker a batch writes when it claims a vote.
`<id>` is `vote_id(owner, prediction)`: the owner's tag (`owner_tag`, so one listing of
`feedback/pending/<tag>` finds a user's votes for `DELETE /me`) and a hash of owner and
prediction. The corrected tokens are not part of it: a later correction of the same
prediction is the same vote, rewritten in place (or moved between pending/ and held/), never
a second one. Each vote names its own earlier versions (`previous_versions`), so erasing it
deletes exact versions and never lists the bucket's.

This module is storage only (no model, no numpy): the feedback trigger imports it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from botocore.exceptions import ClientError

from functions.common.s3json import CONDITION_FAILED, delete_versions, put_json

PENDING = "feedback/pending/"
HELD = "feedback/held/"
USED = "feedback/used/"
OWNER_TAG_LEN = 12


def owner_tag(owner: str) -> str:
    """The first hex digits of every vote id of `owner`: one listing of
    `feedback/pending/<tag>` finds a user's corrections (`DELETE /me`) without reading
    anyone else's, and the key does not show the owner's id."""
    return hashlib.sha256(f"owner:{owner}".encode()).hexdigest()[:OWNER_TAG_LEN]


def vote_id(owner: str, prediction_id: str) -> str:
    """32 hex digits: the owner's tag, then a hash of (owner, prediction)."""
    digest = hashlib.sha256(json.dumps([owner, prediction_id]).encode()).hexdigest()
    return owner_tag(owner) + digest[: 32 - OWNER_TAG_LEN]


def vote_key(prefix: str, vid: str) -> str:
    return f"{prefix}{vid}.json"


@dataclass(frozen=True)
class StoredVote:
    prefix: str  # PENDING, HELD or USED
    item: dict
    version: str  # the S3 version id of what was read
    etag: str

    @property
    def key(self) -> str:
        return vote_key(self.prefix, self.item["id"])

    def versions(self) -> list[tuple[str, str]]:
        """Every version of this vote's object that it knows of: (key, version id)."""
        known = [self.version, *self.item.get("previous_versions", [])]
        return [(self.key, v) for v in known if v]


class VoteChanged(Exception):
    """The vote was rewritten between our read and our write (a concurrent correction)."""


class FeedbackStore:
    """Vote objects in the data bucket; every operation costs a fixed number of S3 calls."""

    def __init__(self, s3, bucket: str):
        self.s3, self.bucket = s3, bucket

    def find(self, vid: str) -> StoredVote | None:
        """The stored vote `vid`, wherever it is (pending, held, or claimed: used/)."""
        for prefix in (PENDING, HELD, USED):
            try:
                obj = self.s3.get_object(Bucket=self.bucket, Key=vote_key(prefix, vid))
            except ClientError as exc:
                if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                    continue
                raise
            found = json.loads(obj["Body"].read())
            item = found.get("item", found)  # a used/ marker holds the item it marks
            return StoredVote(prefix, item, obj.get("VersionId") or "", obj.get("ETag", ""))
        return None

    def put_new(self, item: dict) -> bool:
        """Write under pending/ or held/ unless it exists; False for a duplicate."""
        prefix = HELD if item["held"] else PENDING
        return put_json(self.s3, self.bucket, vote_key(prefix, item["id"]), item, only_if_new=True)

    def replace(self, existing: StoredVote, item: dict) -> None:
        """Rewrite a pending or held vote as `item` (pending/ or held/, as `item` says).

        In place: a conditional write on the version read (`If-Match`), naming that version
        among its previous ones. Moved (pending <-> held): written at the new key, then every
        version of the old key deleted by id. Raises VoteChanged when a concurrent correction
        won the race.
        """
        prefix = HELD if item["held"] else PENDING
        key = vote_key(prefix, item["id"])
        if existing.prefix == prefix:
            item["previous_versions"] = [v for _, v in existing.versions()]
            body = json.dumps(item).encode()
            try:
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                    IfMatch=existing.etag,
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] in (*CONDITION_FAILED, "NoSuchKey", "404"):
                    raise VoteChanged(key) from exc
                raise
            return
        item["previous_versions"] = []
        if not put_json(self.s3, self.bucket, key, item, only_if_new=True):
            raise VoteChanged(key)
        if existing.prefix != USED:  # a claimed vote's marker belongs to its batch
            delete_versions(self.s3, self.bucket, existing.versions())
