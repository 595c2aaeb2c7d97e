"""Pending votes -> one claimed batch -> exactly one training job; and back on failure.

A vote is one prediction's example kept for training: a consented correction or confirmation
alike (docs/feedback-loop.md, "What counts towards retraining"), one object under
`feedback/pending/`. Below, "correction" means either.

The claim (`claim_feedback_batch`) is safe under duplicate and concurrent S3 deliveries
without any lock service, using S3 conditional writes only:

- Batches are numbered 1, 2, 3... and a batch exists once `feedback/batches/<n>/manifest.json`
  does. It is written with `IfNoneMatch='*'`, so of any number of claimers exactly one
  creates batch n; the others learn that they lost and start nothing.
- Before listing pending corrections, a claimer *finishes* the latest batch n-1 (idempotent:
  copy its items and inputs into the batch folder, write `feedback/used/<id>.json`, delete
  the claimed versions of the pending object, then mark the batch `finished.json`). So
  whoever writes batch n has seen every item of n-1 leave pending/, and by induction no
  correction is in two batches. A crash between claim and finish is repaired by the next
  claimer; once the marker is there, the next claimers skip the work.
- A correction whose `used/` marker names a batch it was not returned from is a duplicate
  sent again after its claim: it is dropped, never trained on twice.
- Only the winner of a claim starts the job, whose name derives from the batch.

What one S3 notification costs is fixed, whatever the bucket holds: the latest batch is found
from a pointer (`feedback/batches/latest.json`, then a probe of the next manifest), and the
pending votes are one listing of the current objects under `feedback/pending/` (never of the
bucket's versions; a vote is one object per prediction, so it is bounded by the threshold).
Only a claim reads each vote, and that is the batch's size. The count applies the per-user
cap: at most `daily_cap` votes of one user (the owner tag that starts each vote id) and one
day (the vote's last write) count towards the threshold and go into one batch; the rest
wait for the next (`countable`).

On a failed job `release_batch` puts each correction back under pending/ (attempts + 1,
the batch named in `returned_from`), or after `max_attempts` under held/: nothing is lost.
S3 itself makes conditional writes atomic; the local stack's emulator must too (moto checks
them without a lock: the local stack (local_stack/) serialises them), and the tests do the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from functions.common import telemetry
from functions.common.aws import S3Client
from functions.common.feedback_store import HELD, OWNER_TAG_LEN, PENDING, USED
from functions.common.model_bucket import checkpoint_key
from functions.common.s3json import delete_versions, put_json
from functions.common.store import iso

log = logging.getLogger(__name__)

BATCHES = "feedback/batches/"
LATEST = f"{BATCHES}latest.json"  # a hint: the highest batch number a claimer has written
DAILY_CAP = 20  # votes of one user and one day that count towards a batch (Settings)
HELDOUT_SHARE = 0.2  # of a batch, kept out of fine-tuning to check the candidate on
MIN_HELDOUT_BATCH = 5  # smaller batches hold nothing out (the check is then skipped)


def batch_prefix(batch: int) -> str:
    return f"{BATCHES}{batch:08d}/"


def manifest_key(batch: int) -> str:
    return f"{batch_prefix(batch)}manifest.json"


def status_key(batch: int) -> str:
    return f"{batch_prefix(batch)}status.json"


def finished_key(batch: int) -> str:
    return f"{batch_prefix(batch)}finished.json"


def countable(entries: list[dict], daily_cap: int) -> list[dict]:
    """The pending votes that count, at most `daily_cap` per (owner tag, day), oldest first;
    `entries` are `{"id", "owner_tag", "day", "modified"}` as `FeedbackBatches.pending`
    lists them."""
    taken: dict[tuple[str, str], int] = {}
    chosen = []
    for entry in sorted(entries, key=lambda e: (e["modified"], e["id"])):
        group = (entry["owner_tag"], entry["day"])
        if taken.get(group, 0) < daily_cap:
            taken[group] = taken.get(group, 0) + 1
            chosen.append(entry)
    return sorted(chosen, key=lambda e: e["id"])


def job_name(prefix: str, batch: int, manifest_digest: str) -> str:
    """Unique per batch (and per stack life: the digest covers the claimed versions)."""
    return f"{prefix}batch-{batch:06d}-{manifest_digest[:8]}"


def batch_of_job(name: str) -> int | None:
    parts = name.split("-batch-")
    try:
        return int(parts[1].split("-")[0]) if len(parts) == 2 else None
    except ValueError:
        return None


def heldout_ids(ids: list[str]) -> set[str]:
    """A deterministic slice of a batch (by id hash), none for a small batch."""
    if len(ids) < MIN_HELDOUT_BATCH:
        return set()
    count = max(1, round(len(ids) * HELDOUT_SHARE))
    return set(sorted(ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())[:count])


@dataclass
class FeedbackBatches:
    s3: S3Client
    bucket: str
    counted: int = 0  # pending votes the latest claim counted (after the per-user cap)

    # --- reading ------------------------------------------------------------------------

    def _get_json(self, key: str, version: str | None = None) -> dict | None:
        extra = {"VersionId": version} if version and version != "null" else {}
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "NoSuchVersion", "404"):
                return None
            raise
        return json.loads(body.read())

    def _put_json(self, key: str, value: dict, only_if_new: bool = False) -> bool:
        return put_json(self.s3, self.bucket, key, value, only_if_new)

    def pending(self) -> list[dict]:
        """The current pending votes, one listing of current objects (never versions):
        [{"key", "id", "owner_tag", "day", "modified"}], by key."""
        found = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=PENDING
        )
        for page in pages:
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith(".json"):
                    continue
                fid = obj["Key"][len(PENDING) : -len(".json")]
                modified = obj["LastModified"].astimezone(UTC)
                found.append(
                    {
                        "key": obj["Key"],
                        "id": fid,
                        "owner_tag": fid[:OWNER_TAG_LEN],
                        "day": modified.date().isoformat(),
                        "modified": modified.isoformat(),
                    }
                )
        return sorted(found, key=lambda i: i["key"])

    def latest_batch(self) -> int:
        """The highest batch number (0 before the first): the pointer, then a probe of the
        manifests after it (a claimer may not have moved the pointer yet)."""
        latest = int((self._get_json(LATEST) or {}).get("batch", 0))
        while self._exists(manifest_key(latest + 1)):
            latest += 1
        return latest

    def _exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _version_of(self, key: str) -> str | None:
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key).get("VersionId") or "null"
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def manifest(self, batch: int) -> dict | None:
        return self._get_json(manifest_key(batch))

    def status(self, batch: int) -> dict:
        return self._get_json(status_key(batch)) or {"batch": batch, "state": "unknown"}

    def set_status(self, batch: int, state: str, **facts) -> dict:
        status = {**self.status(batch), "batch": batch, "state": state, **facts}
        status["updated_at"] = iso(datetime.now(UTC))
        self._put_json(status_key(batch), status)
        return status

    # --- claiming -----------------------------------------------------------------------

    def finish(self, manifest: dict) -> None:
        """Move a claimed batch's items out of pending/ (idempotent; skipped once released)."""
        batch = manifest["batch"]
        if self._exists(finished_key(batch)) or self.status(batch).get("state") == "released":
            return
        prefix = batch_prefix(batch)
        for entry in manifest["items"]:
            item = self._get_json(entry["key"], entry["version_id"])
            if item is None:  # already finished by someone else: the batch copy holds it
                item = self._get_json(f"{prefix}items/{entry['id']}.json")
                if item is None:
                    log.error("batch %s lost track of %s", batch, entry["key"])
                    continue
            item = {**item, "split": entry["split"], "batch": batch}
            self._put_json(f"{prefix}items/{entry['id']}.json", item)
            self._copy_input(item, prefix)
            self._put_json(f"{USED}{entry['id']}.json", {"batch": batch, "item": item})
            self._delete_claimed(entry, item)
        self._put_json(finished_key(batch), {"batch": batch, "at": iso(datetime.now(UTC))})

    def _copy_input(self, item: dict, prefix: str) -> None:
        ext = "." + item["input_key"].rsplit(".", 1)[-1] if "." in item["input_key"] else ""
        try:
            self.s3.copy_object(
                Bucket=self.bucket,
                Key=f"{prefix}inputs/{item['id']}{ext}",
                CopySource={"Bucket": self.bucket, "Key": item["input_key"]},
            )
        except ClientError as exc:  # erased by its owner since: train without it
            if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                raise
            log.warning("input %s of feedback %s is gone", item["input_key"], item["id"])

    def _delete_claimed(self, entry: dict, item: dict) -> None:
        """Delete the claimed version of a pending vote and the earlier ones it names (by
        id: no delete marker, nothing left to resurface). A correction written since is a
        newer version: it stays, and the next claim drops it as a repeat (`_is_duplicate`)."""
        names = [entry["version_id"], *item.get("previous_versions", [])]
        delete_versions(self.s3, self.bucket, [(entry["key"], v) for v in names])

    def _is_duplicate(self, entry: dict) -> bool:
        """A correction sent again after a batch claimed it (see the module docstring)."""
        marker = self._get_json(f"{USED}{entry['id']}.json")
        if marker is None:
            return False
        item = self._get_json(entry["key"], entry["version_id"]) or {}
        return marker["batch"] not in item.get("returned_from", [])

    def claim(
        self, threshold: int, now: datetime | None = None, daily_cap: int = DAILY_CAP
    ) -> dict | None:
        """Claim the countable pending votes as the next batch if there are `threshold`.

        Returns the manifest this call wrote, or None (too few, or another claimer won).
        Below the threshold it reads no vote: a listing decides.
        """
        latest = self.latest_batch()
        if latest:
            previous = self.manifest(latest)
            if previous is not None:
                self.finish(previous)
        counted = countable(self.pending(), daily_cap)
        self.counted = len(counted)  # what the threshold was compared with (the trigger's report)
        if len(counted) < threshold:
            return None
        entries = []
        for listed in counted:
            version = self._version_of(listed["key"])
            if version is None:  # erased since the listing
                continue
            entry = {"key": listed["key"], "version_id": version, "id": listed["id"]}
            if self._is_duplicate(entry):
                log.info("dropping %s: a batch claimed it already", entry["key"])
                item = self._get_json(entry["key"], version) or {}
                self._delete_claimed(entry, item)
                continue
            entries.append(entry)
        self.counted = len(entries)
        if len(entries) < threshold:
            return None
        held = heldout_ids([e["id"] for e in entries])
        for e in entries:
            e["split"] = "heldout" if e["id"] in held else "train"
        batch = latest + 1
        digest = hashlib.sha256(
            json.dumps([[e["key"], e["version_id"]] for e in entries]).encode()
        ).hexdigest()
        manifest = {
            "batch": batch,
            "created_at": iso(now or datetime.now(UTC)),
            "threshold": threshold,
            "digest": digest,
            "items": entries,
        }
        if not self._put_json(manifest_key(batch), manifest, only_if_new=True):
            return None
        self._put_json(LATEST, {"batch": batch})
        self.set_status(batch, "claimed", size=len(entries))
        self.finish(manifest)
        return manifest

    # --- failure ------------------------------------------------------------------------

    def release(self, batch: int, reason: str, max_attempts: int) -> dict:
        """Return a batch's corrections to pending/ (or held/ after max_attempts)."""
        manifest = self.manifest(batch)
        status = self.status(batch)
        if manifest is None or status.get("state") == "released":
            return {"batch": batch, "returned": 0, "held": 0, "already": True}
        self.finish(manifest)  # so every item has its copy in the batch folder
        returned = held = 0
        prefix = batch_prefix(batch)
        for entry in manifest["items"]:
            item = self._get_json(f"{prefix}items/{entry['id']}.json")
            if item is None:
                continue
            item = {k: v for k, v in item.items() if k not in ("split", "batch")}
            item["previous_versions"] = []  # a new object: the claimed versions are gone
            item["attempts"] = int(item.get("attempts", 0)) + 1
            item["returned_from"] = sorted({*item.get("returned_from", []), batch})
            if item["attempts"] >= max_attempts:
                item["held"] = True
                item["held_reason"] = f"training failed {item['attempts']} times: {reason}"
                self._put_json(f"{HELD}{entry['id']}.json", item)
                held += 1
            else:
                self._put_json(f"{PENDING}{entry['id']}.json", item)
                returned += 1
        self.set_status(batch, "released", reason=reason, returned=returned, held=held)
        return {"batch": batch, "returned": returned, "held": held, "already": False}


# --- the training job ---------------------------------------------------------------------


def training_job_request(settings, manifest: dict, base_version: str) -> dict:
    """The CreateTrainingJob request for a claimed batch (script mode, PyTorch DLC)."""
    name = job_name(settings.job_prefix, manifest["batch"], manifest["digest"])
    data, models = settings.data_bucket, settings.model_bucket
    hyper = {
        # script mode: the DLC fetches the source tarball and runs the program in it
        "sagemaker_program": json.dumps("model_export/finetune_job.py"),
        "sagemaker_submit_directory": json.dumps(settings.training_source_uri),
        "base-version": base_version,
        "batch": str(manifest["batch"]),
        "model-bucket": models,
        "job-name": name,
        **{k: str(v) for k, v in json.loads(settings.training_hyperparameters or "{}").items()},
    }

    def channel(name: str, uri: str) -> dict:
        return {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": uri,
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "InputMode": "File",
        }

    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": settings.training_image,
            "TrainingInputMode": "File",
        },
        "RoleArn": settings.training_role_arn,
        "HyperParameters": hyper,
        "InputDataConfig": [
            channel("feedback", f"s3://{data}/{batch_prefix(manifest['batch'])}"),
            channel("replay", f"s3://{data}/datasets/replay/"),
            channel("base", f"s3://{models}/{checkpoint_key(base_version, '')}"),
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{models}/training/"},
        "ResourceConfig": {
            "InstanceType": settings.training_instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.training_max_runtime_s},
        "Tags": [
            {"Key": "inktex:stage", "Value": settings.stage},
            {"Key": "inktex:batch", "Value": str(manifest["batch"])},
        ],
    }


def read_threshold(ssm, name: str, default: int = 100) -> int:
    if not name:
        return default
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ParameterNotFound":
            return default
        raise
    return max(1, int(value))


def on_feedback_created(settings, s3, ssm, sagemaker, base_version: str) -> dict:
    """The trigger: count, claim at the threshold, start the one job of the claim."""
    batches = FeedbackBatches(s3, settings.data_bucket)
    threshold = read_threshold(ssm, settings.threshold_parameter)
    cap = settings.feedback_daily_cap
    manifest = batches.claim(threshold, daily_cap=cap)
    if manifest is None:
        pending = batches.counted
        telemetry.retraining_queue(pending, threshold)
        return {"claimed": False, "pending": pending, "threshold": threshold}
    telemetry.retraining_queue(0, threshold)  # the claim took every pending correction
    batch = manifest["batch"]
    request = training_job_request(settings, manifest, base_version)
    try:
        sagemaker.create_training_job(**request)
    except ClientError as exc:
        reason = f"the training job could not start: {exc}"
        log.error(reason)
        batches.set_status(batch, "failed", job=request["TrainingJobName"], reason=reason)
        batches.release(batch, reason, settings.max_training_attempts)
        telemetry.training_job("failed")
        raise
    telemetry.training_job("started")
    batches.set_status(
        batch,
        "training",
        job=request["TrainingJobName"],
        base_version=base_version,
        started_at=iso(datetime.now(UTC)),
    )
    return {
        "claimed": True,
        "batch": batch,
        "size": len(manifest["items"]),
        "job": request["TrainingJobName"],
        "threshold": threshold,
    }


def retraining_state(settings, s3, ssm, decisions: list[dict]) -> dict:
    """What `GET /retraining` shows: pending, threshold, the latest batch and decisions."""
    batches = FeedbackBatches(s3, settings.data_bucket)
    latest = batches.latest_batch()
    status = batches.status(latest) if latest else None
    running = status if status and status.get("state") in ("claimed", "training") else None
    waiting = batches.pending()
    pending = len(countable(waiting, settings.feedback_daily_cap))
    return {
        "pending": pending,  # votes: what the threshold counts (one per prediction, capped)
        "waiting": len(waiting) - pending,  # over a user's daily cap: counted in a later batch
        "threshold": read_threshold(ssm, settings.threshold_parameter),
        "running_job": running,
        "latest_batch": status,
        "decisions": decisions,
    }
