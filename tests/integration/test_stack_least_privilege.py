"""Least privilege, measured on the running local stack (issue 11).

The stack starts with its call recorder on (`INKTEX_RECORD_AWS_CALLS`,
local_stack/call_recorder.py): every function's process appends each AWS operation it
performs (sent, or presigned for a client to send) to one file. One scenario, through the
API and the stack's own event routing, makes every function do its work: predictions,
history, inputs, corrections held and pending, a retraining batch and its job, a completed
job scored and decided, a failed job's batch released and claimed again, an upload through
a presigned URL, the metrics, deleting a prediction and `DELETE /me`; and the recovery of a
claim whose trigger died before finishing it. Then, per function:

- every recorded call is allowed by that function's policy in template.yaml;
- every grant of that policy (each action x resource) is needed by a recorded call, except
  those only the Lambda runtime uses (logs, traces: `RUNTIME_ONLY`, with the reasons).

No SageMaker runs here (`training="none"`): the test writes what a job would leave and puts
the job's state change on the emulator's EventBridge bus, as SageMaker would.
"""

from __future__ import annotations

import json

import iam_policy
import pytest
from stack_kit import IMAGE, REPO, TINY_MODEL, bearer, free_port, request, wait_for

from functions.common import retraining
from functions.common.retraining import FeedbackBatches
from functions.common.s3json import put_json
from local_stack import call_recorder, emulator
from local_stack.seed import FIXTURES, seed
from local_stack.stack import LocalSettings, LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

THRESHOLD = 2
# Grants no botocore hook can see used, by action prefix; each with the reason.
RUNTIME_ONLY = {
    "logs:": "the Lambda runtime writes the function's logs, not its code",
    "xray:": "the Lambda runtime sends the traces, not the function's clients",
}


def excused(function: str, grant: iam_policy.Grant) -> bool:
    return grant.action.startswith(tuple(RUNTIME_ONLY))


class Scenario:
    """The running stack, and the requests the scenario makes of it."""

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.info = stack.info()
        self.api_url = self.info["api_url"]
        self.data = self.info["resources"]["DataBucketName"]
        self.models = self.info["resources"]["ModelBucketName"]
        self.s3 = stack.moto.client("s3")
        self.sagemaker = stack.moto.client("sagemaker")
        self.events = stack.moto.client("events")
        self.sqs = stack.moto.client("sqs")

    def token(self, user: str, groups: list[str] | None = None) -> str:
        return self.stack.gateway.issuer.id_token(user, ttl_s=600, groups=groups or [])

    def call(self, method: str, path: str, token: str | None = None, body=None, **headers):
        if token:
            headers.update(bearer(token))
        if isinstance(body, dict):
            body, headers["content-type"] = json.dumps(body).encode(), "application/json"
        elif isinstance(body, bytes):
            headers.setdefault("content-type", "image/png")
        status, _, raw = request(method, f"{self.api_url}{path}", body, headers)
        assert status < 300, (method, path, status, raw[:300])
        return json.loads(raw) if raw.startswith(b"{") else raw

    def correct(self, token: str, prediction: str, consent: bool = True) -> dict:
        body = {"prediction_id": prediction, "latex": "x", "consent": consent}
        return self.call("POST", "/feedback", token, body)

    def jobs(self) -> list[str]:
        summaries = self.sagemaker.list_training_jobs()["TrainingJobSummaries"]
        return sorted(j["TrainingJobName"] for j in summaries)

    def decisions(self, token: str) -> dict[str, str]:
        state = self.call("GET", "/retraining", token)
        return {d["job"]: d["decision"] for d in state["decisions"]}

    def quiet(self) -> bool:
        """No event waits in a queue or runs in a function."""
        for poller in self.stack.pollers:
            attributes = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            counts = self.sqs.get_queue_attributes(
                QueueUrl=poller.queue_url, AttributeNames=attributes
            )["Attributes"]
            if not poller.idle.is_set() or any(int(n) for n in counts.values()):
                return False
        return True

    def claim_without_finishing(self) -> str:
        """Claim what is pending as the next batch, as a trigger would before it died; the
        name of the job it would have started."""
        batches = FeedbackBatches(self.s3, self.data)
        items = [
            {
                "key": entry["key"],
                "id": entry["id"],
                "version_id": self.s3.head_object(Bucket=self.data, Key=entry["key"])["VersionId"],
                "split": "train",
            }
            for entry in batches.pending()
        ]
        batch, digest = batches.latest_batch() + 1, "d1ed" * 16
        claim = {"batch": batch, "threshold": THRESHOLD, "digest": digest, "items": items}
        assert put_json(self.s3, self.data, retraining.manifest_key(batch), claim, True)
        batches.set_status(batch, "claimed", size=len(items))
        first = self.jobs()[0]  # the stack's own job prefix
        return retraining.job_name(first.split("batch-")[0], batch, digest)

    def job_ended(self, job: str, status: str) -> None:
        """What SageMaker sends when a job ends (events/training_job_*.json), on the bus."""
        name = "completed" if status == "Completed" else "failed"
        event = json.loads((REPO / "events" / f"training_job_{name}.json").read_text())
        sample = event["detail"]["TrainingJobName"]
        event = json.loads(json.dumps(event).replace(sample, job))
        emulator.put_event(self.events, event)


def run_scenario(s: Scenario) -> None:
    image = IMAGE.read_bytes()
    s.call("GET", "/health")
    s.call("GET", "/openapi.json")
    s.call("POST", "/recognize", body=image)
    s.call("GET", "/models")
    s.call("GET", "/models/registry", s.token("olga", ["operators"]))

    alice = s.token("alice")
    ids = [s.call("POST", "/predictions", alice, image)["id"] for _ in range(6)]
    s.call("GET", "/predictions", alice)
    s.call("GET", f"/predictions/{ids[0]}", alice)
    s.call("GET", f"/predictions/{ids[0]}/input", alice)
    s.call("GET", "/retraining", alice)
    s.correct(alice, ids[0], consent=False)  # held
    seed(s.s3, s.data, FIXTURES)  # the evaluation set a completed job is scored on

    # batch 1 -> its job completes: the candidate is scored against production and decided
    for i in ids[1:3]:
        s.correct(alice, i)
    (first,) = wait_for("the first training job", s.jobs)
    production = s.info["model"]["version"]
    result = {"version": production, "lineage": {"batch": 1}}  # what the job would write
    s.s3.put_object(Bucket=s.models, Key=f"training/{first}/result.json", Body=json.dumps(result))
    s.job_ended(first, "Completed")
    wait_for("the first decision", lambda: first in s.decisions(alice))

    # batch 2 -> its job fails: the corrections return to pending and are claimed again
    for i in ids[3:5]:
        s.correct(alice, i)
    second = wait_for("the second job", lambda: [j for j in s.jobs() if j != first])[0]
    s.job_ended(second, "Failed")

    def released_and_claimed_again() -> bool:
        return s.decisions(alice).get(second) == "failed" and len(s.jobs()) == 3

    wait_for("the batch released and claimed again", released_and_claimed_again)

    # a trigger that died after writing its claim, before moving the items out of pending/:
    # the job fails, and its release finishes the claim first
    s.correct(alice, ids[5])  # pending, under the threshold
    wait_for("the trigger to count it", s.quiet)  # not to finish the claim below itself
    died = s.claim_without_finishing()
    s.job_ended(died, "Failed")
    wait_for("the unfinished claim's release", lambda: s.decisions(alice).get(died) == "failed")

    # a photo through a presigned URL: the drop function predicts
    upload = s.call(
        "POST", "/uploads", alice, {"filename": "photo.png", "content_type": "image/png"}
    )
    status, _, raw = request("PUT", upload["url"], image, upload["headers"])
    assert status == 200, raw

    def dropped():
        items = s.call("GET", "/predictions", alice)["items"]
        return [i["id"] for i in items if i.get("source_key") == upload["key"]]

    (from_upload,) = wait_for("the upload's prediction", dropped)
    s.call("GET", f"/predictions/{from_upload}/input", alice)

    token = s.stack.secret_path("MetricsTokenSecret").read_text().strip()
    assert b"inktex_predictions_total" in s.call("GET", "/metrics", token)
    s.call("GET", "/stats", alice)

    s.call("DELETE", f"/predictions/{ids[1]}", alice)
    erased = s.call("DELETE", "/me", alice)
    assert erased["erased"]["feedback"] == 2, erased  # the held and the pending correction


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, start_in_process) -> tuple[LocalStack, list[dict]]:
    """The calls each function made in the scenario, on a stack of this module's own."""
    state_dir = tmp_path_factory.mktemp("least-privilege")
    calls = state_dir / "calls.jsonl"
    settings = LocalSettings(
        aws_port=free_port(),
        api_port=free_port(),
        state_dir=state_dir,
        model=TINY_MODEL,
        training="none",
        parameter_overrides={"RetrainingThreshold": str(THRESHOLD)},
        function_env={call_recorder.ENV: str(calls)},
    )
    local = start_in_process(settings)
    try:
        run_scenario(Scenario(local))
    finally:
        local.stop(snapshot=False)  # every function's process has ended: the file is whole
    return local, call_recorder.read_calls(calls)


def test_every_function_was_heard(recorded):
    local, calls = recorded
    # none left out of the scenario
    assert set(local.stack.functions()) == set(iam_policy.FUNCTIONS)
    assert {c["function"] for c in calls} == set(iam_policy.FUNCTIONS)
    assert any(c["presigned"] for c in calls)  # the upload URL, as the API signed it


def test_every_call_is_in_the_functions_policy(recorded):
    local, calls = recorded
    missing = iam_policy.denied(local.stack, calls)
    assert not missing, json.dumps(missing, indent=1)


def test_every_grant_is_used(recorded):
    local, calls = recorded
    idle = iam_policy.unused(local.stack, calls, iam_policy.FUNCTIONS, excused)
    assert not idle, "granted, never used:\n" + json.dumps(idle, indent=1)
