"""What one event costs in S3 calls does not grow with what the bucket holds (issue 19).

The S3 calls are recorded with the local stack's botocore hooks (local_stack/
call_recorder.py, as the least-privilege tests do). With 10 and then with 1,000 corrections
already stored (claimed into a batch, with their predictions, inputs and feedback notes),
one more correction, its replacement, the trigger's delivery, one deletion and one user's
erasure make exactly the same calls, and none of them lists the bucket's object versions
(an O(bucket) call, and in the emulator a deep copy of every version).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from lambda_testkit import ENV, as_user, call_api, load_event

from functions.common import wiring
from functions.common.feedback_store import FeedbackStore, vote_id
from functions.common.retraining import FeedbackBatches
from functions.common.store import PredictionStore, prediction_id
from functions.feedback_trigger import app as trigger
from local_stack.call_recorder import CallRecorder

pytestmark = pytest.mark.slow


class Recorder(CallRecorder):
    def __init__(self):
        self.calls: list[dict] = []
        super().__init__(self.calls.append)

    def during(self, action) -> tuple[object, list[str]]:
        """What `action` calls: "service:Operation", with the error S3 answered if any."""
        self.calls.clear()
        self.function = "measured"  # the recorder records only a function's calls
        try:
            result = action()
        finally:
            self.function = ""
        calls = [f"{c['service']}:{c['operation']}" for c in self.calls]
        return result, [
            c + (f" {r['error']}" if r["error"] else "")
            for c, r in zip(calls, self.calls, strict=True)
        ]


@pytest.fixture
def recorder(aws, production):
    aws.ssm.put_parameter(Name=ENV["RETRAINING_THRESHOLD_PARAMETER"], Value="5", Type="String")
    rec = Recorder()
    events = boto3._get_default_session().events
    rec.install(events)
    wiring.services.cache_clear()
    yield rec
    rec.uninstall(events)
    wiring.services.cache_clear()


def store_corrections(aws, n: int, start: int) -> None:
    """n corrections of n predictions by other users, each with its input and a feedback
    note, all claimed into one batch (so pending/ keeps their history, as it does in use)."""
    predictions = PredictionStore(aws.s3, aws.data_bucket)
    votes = FeedbackStore(aws.s3, aws.data_bucket)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(start, start + n):
        owner = f"user-{100 + i % 7}"
        pid = prediction_id(t0 + timedelta(milliseconds=i), f"{i:024x}")
        key, version = predictions.put_input(f"inputs/{owner}/{pid}.json", b"[]", "x/json")
        record = {"id": pid, "owner": owner, "input_key": key, "input_version": version}
        predictions.put_record(record)
        item = {"id": vote_id(owner, pid), "prediction_id": pid, "owner": owner}
        item.update(input_key=key, held=False, attempts=0, returned_from=[])
        assert votes.put_new(item)
        predictions.note_feedback(owner, pid, {"id": item["id"], "status": "corrected"})
    assert FeedbackBatches(aws.s3, aws.data_bucket).claim(1, daily_cap=10**6) is not None


def one_users_day(recorder: Recorder, lambda_context, sub: str) -> dict[str, list[str]]:
    """A user predicts, corrects, changes the correction, the trigger runs, the user
    deletes the prediction and then erases everything: the calls of each step."""
    _, pred = call_api(as_user(load_event("api_create_prediction.json"), sub), lambda_context)

    def correct(latex: str):
        event = as_user(load_event("api_create_feedback.json"), sub)
        payload = {"prediction_id": pred["id"], "latex": latex, "consent": True}
        event["body"] = base64.b64encode(json.dumps(payload).encode()).decode()
        status, body = call_api(event, lambda_context)
        assert status == 201, body
        return body

    def deliver():
        return trigger.lambda_handler(load_event("s3_feedback_pending.json"), lambda_context)

    def delete():
        event = as_user(load_event("api_delete_prediction.json"), sub)
        event["pathParameters"] = {"prediction_id": pred["id"]}
        event["rawPath"] = f"/predictions/{pred['id']}"
        assert call_api(event, lambda_context)[0] == 204

    def erase():
        event = as_user(load_event("api_delete_prediction.json"), sub)
        event.update(routeKey="DELETE /me", rawPath="/me", pathParameters=None)
        event["requestContext"]["http"]["path"] = "/me"
        event["requestContext"]["routeKey"] = "DELETE /me"
        status, body = call_api(event, lambda_context)
        assert status == 200 and body["erased"]["predictions"] == 1, body

    _, kept = call_api(as_user(load_event("api_create_prediction.json"), sub), lambda_context)
    steps = {
        "correction": lambda: correct("x+1"),
        "replacement": lambda: correct("x+2"),
        "trigger": deliver,
        "deletion": delete,
        "erasure": erase,
    }
    costs = {name: recorder.during(step)[1] for name, step in steps.items()}
    assert kept["id"]
    return costs


def test_one_more_correction_or_deletion_costs_the_same_after_10_and_1000(
    aws, recorder, lambda_context
):
    store_corrections(aws, 10, start=0)
    after_10 = one_users_day(recorder, lambda_context, "alice")
    store_corrections(aws, 990, start=10)
    after_1000 = one_users_day(recorder, lambda_context, "bob")
    for step, calls in after_10.items():
        assert calls == after_1000[step], step
        assert "s3:ListObjectVersions" not in calls, step
    # the trigger below the threshold reads no vote: a pointer, a probe, one listing
    trigger = after_10["trigger"]
    assert trigger.count("s3:ListObjectsV2") == 1, trigger
    assert not any(c.startswith("s3:DeleteObject") for c in trigger), trigger
    assert len(after_10["deletion"]) <= 6, after_10["deletion"]  # read, delete, confirm
