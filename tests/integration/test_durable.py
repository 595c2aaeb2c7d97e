"""A crash loses an answer, never a record or an erasure (issue 18, "Durable").

The stack is killed with SIGKILL (its whole process group, as a power cut would) while
clients are writing to it, then started again on the same state folder: every prediction,
correction and deletion that was answered 2xx is as it was acknowledged. Object versions
keep their ids, and an S3 event the function had not finished with is delivered after the
restart.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time

import pytest
from stack_kit import IMAGE, POLL_S, REPO, bearer, request, wait_for

from functions.common.model_bucket import training_decision_key
from functions.common.retraining import job_name
from local_stack.template import Stack
from local_stack.tokens import subject_of

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

CLIENTS = 4
LOAD_S = 20  # of writes before the kill; the kill comes while they go on
OWED = 10  # events of each kind put just before a kill (PutEvents takes 10 at most)


class Ledger:
    """What the stack acknowledged (2xx), and what was asked and not answered."""

    def __init__(self):
        self.lock = threading.Lock()
        self.predictions: dict[str, str] = {}  # id -> user
        self.corrected: dict[str, str] = {}  # correction id -> prediction id
        self.deleted: set[str] = set()
        self.unanswered_deletes: set[str] = set()


def client(stack, user: str, ledger: Ledger, stop: threading.Event) -> None:
    auth = bearer(stack.token(user, ttl=3600))
    mine: list[str] = []
    for n in itertools.count():
        if stop.is_set():
            return
        try:
            status, _, body = request(
                "POST",
                f"{stack.api}/predictions",
                IMAGE.read_bytes(),
                {"content-type": "image/png", **auth},
            )
            if status == 201:
                pid = json.loads(body)["id"]
                with ledger.lock:
                    ledger.predictions[pid] = user
                if n % 2 == 0:  # corrected, and never deleted
                    correction = {"prediction_id": pid, "latex": "x", "consent": True}
                    status, _, body = request(
                        "POST",
                        f"{stack.api}/feedback",
                        json.dumps(correction).encode(),
                        {"content-type": "application/json", **auth},
                    )
                    if status == 201:
                        with ledger.lock:
                            ledger.corrected[json.loads(body)["id"]] = pid
                else:
                    mine.append(pid)
            if n % 3 == 2 and mine:
                victim = mine.pop(0)
                with ledger.lock:
                    ledger.unanswered_deletes.add(victim)
                status, _, _ = request("DELETE", f"{stack.api}/predictions/{victim}", None, auth)
                if status in (200, 204):
                    with ledger.lock:
                        ledger.deleted.add(victim)
                        ledger.unanswered_deletes.discard(victim)
        except (OSError, http.client.HTTPException):  # the stack is gone mid-answer: lost
            time.sleep(0.2)


def test_kill_9_under_load_loses_nothing_that_was_acknowledged(launch_stack):
    stack = launch_stack()
    ledger, stop = Ledger(), threading.Event()
    users = [f"durable-{i}" for i in range(CLIENTS)]
    threads = [
        threading.Thread(target=client, args=(stack, u, ledger, stop), daemon=True) for u in users
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(LOAD_S)
        wait_for("some acknowledged deletes", lambda: len(ledger.deleted) >= 2)
        stack.kill()  # mid-load: requests are in flight
    finally:
        stop.set()
        for t in threads:
            t.join(POLL_S)
    with ledger.lock:
        predictions = dict(ledger.predictions)
        corrected, deleted = dict(ledger.corrected), set(ledger.deleted)
        unsure = set(ledger.unanswered_deletes)
    assert len(predictions) >= 5 and corrected and deleted, (predictions, corrected, deleted)

    stack.up()
    kept = {pid: user for pid, user in predictions.items() if pid not in deleted | unsure}
    lost = [
        pid
        for pid, user in kept.items()
        if request("GET", f"{stack.api}/predictions/{pid}", None, bearer(stack.token(user)))[0]
        != 200
    ]
    assert not lost, f"{len(lost)} of {len(kept)} acknowledged predictions lost, e.g. {lost[:3]}"
    back = [
        pid
        for pid in deleted
        if request(
            "GET", f"{stack.api}/predictions/{pid}", None, bearer(stack.token(predictions[pid]))
        )[0]
        != 404
    ]
    assert not back, f"{len(back)} of {len(deleted)} deleted predictions came back: {back[:3]}"
    s3 = stack.aws("s3")
    bucket = stack.info["resources"]["DataBucketName"]
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="feedback/")
        for o in page.get("Contents", [])
    ]
    missing = [fid for fid in corrected if not any(fid in key for key in keys)]
    assert not missing, f"{len(missing)} of {len(corrected)} corrections lost: {missing[:3]}"


def versions(s3, bucket: str, key: str) -> list[tuple]:
    """Every version and delete marker of `key`: (id, latest?, body or "marker"), by id."""
    listed = s3.list_object_versions(Bucket=bucket, Prefix=key)
    found = [(v["VersionId"], v["IsLatest"], "marker") for v in listed.get("DeleteMarkers", [])]
    for v in listed.get("Versions", []):
        body = s3.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Body"].read()
        found.append((v["VersionId"], v["IsLatest"], body))
    return sorted(found)


def test_versions_and_owed_events_survive_kill_9(launch_stack):
    stack = launch_stack()
    s3 = stack.aws("s3")
    bucket = stack.info["resources"]["DataBucketName"]
    key = "feedback/durable-test/versions.json"
    for body in (b"1", b"2", b"3"):
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    s3.delete_object(Bucket=bucket, Key=key)  # a delete marker on top
    before = versions(s3, bucket, key)
    # Events queued faster than their functions take them (one at a time per queue): the
    # kill comes while most are owed. SageMaker's "job failed" events for the
    # training-events function, which records a decision each, and S3 drops for the drop
    # function, which predicts each.
    (rule,) = Stack.from_file(REPO / "template.yaml").event_rules()
    prefix = rule.pattern["detail"]["TrainingJobName"][0]["prefix"]  # what the rule routes
    jobs = [job_name(prefix, 900000 + i, "durable0") for i in range(OWED)]
    put = stack.aws("events").put_events(Entries=[job_failed(job) for job in jobs])
    assert put["FailedEntryCount"] == 0
    owner = subject_of("dropper")
    drops = [f"uploads/{owner}/dropped-before-the-crash-{i}.png" for i in range(OWED)]
    for drop in drops:
        s3.upload_file(str(IMAGE), bucket, drop)
    stack.kill()

    info = stack.up()
    owed = info["redelivered"]
    assert owed["s3"] >= 1 and owed["events"] >= 1, owed  # the kill did leave events owed
    s3 = stack.aws("s3")
    assert versions(s3, bucket, key) == before

    def predicted():
        status, _, body = request(
            "GET", f"{stack.api}/predictions?limit=50", None, bearer(stack.token("dropper"))
        )
        sources = {i.get("source_key") for i in json.loads(body)["items"]} if status == 200 else {}
        return set(drops) <= sources

    assert wait_for("the dropped uploads' predictions after the restart", predicted)
    models = stack.info["resources"]["ModelBucketName"]

    def decided():
        return all(_exists(s3, models, training_decision_key(job)) for job in jobs)

    assert wait_for("a decision for each failed job's event after the restart", decided)


def job_failed(job: str) -> dict:
    """A PutEvents entry as SageMaker's end of a failed training job (events/ has one)."""
    detail = {"TrainingJobName": job, "TrainingJobStatus": "Failed", "FailureReason": "test"}
    return {
        "Source": "aws.sagemaker",
        "DetailType": "SageMaker Training Job State Change",
        "Detail": json.dumps(detail),
    }


def _exists(s3, bucket: str, key: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"))
