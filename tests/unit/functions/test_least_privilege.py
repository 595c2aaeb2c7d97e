"""Least privilege, measured (issue 11), in process: each function's handler runs on its
sample events (events/) against moto, with the environment template.yaml gives it; the
local stack's call recorder (local_stack/call_recorder.py), hooked on boto3's default
session (so on every client the functions build), records each AWS operation with its
resource; each one, mapped to the IAM action(s) it needs (tests/iam_policy.py), must be
allowed by that function's own policy in template.yaml. And no statement grants Action "*"
or a wildcard resource on a data bucket.

tests/integration/test_stack_least_privilege.py measures the same on the running local stack,
and there also finds grants that no call needs. CloudWatch Logs and X-Ray (which no hook
sees: the Lambda runtime writes them) are outside.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import boto3
import iam_policy
import pytest
from iam_policy import Need
from lambda_testkit import ENV, INKML, JOB, as_user, at_prediction, load_event

from functions.api import app as api
from functions.common import wiring
from functions.common.retraining import FeedbackBatches
from functions.feedback_trigger import app as trigger
from functions.metrics import app as metrics_app
from functions.training_events import app as training_events
from functions.upload_inference import app as upload_inference
from local_stack.call_recorder import CallRecorder
from local_stack.template import Stack

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"
ACCOUNT, REGION = "123456789012", "us-east-1"
TOKEN = "example-metrics-token"


class Recorder(CallRecorder):
    """The calls in memory; `function` says whose the next calls are ("" for setup)."""

    def __init__(self):
        self.calls: list[dict] = []
        super().__init__(self.calls.append)


@pytest.fixture
def recorder(aws, production, monkeypatch):
    rec = Recorder()
    events = boto3._get_default_session().events  # every client built from now on copies it
    rec.install(events)
    wiring.services.cache_clear()  # rebuilt after the hooks, so they see them
    metrics_app.clients.cache_clear()
    yield rec
    rec.uninstall(events)
    wiring.services.cache_clear()
    metrics_app.clients.cache_clear()


@pytest.fixture(scope="module")
def stack() -> Stack:
    return Stack.from_file(TEMPLATE, account_id=ACCOUNT, region=REGION)


def as_function(monkeypatch, stack: Stack, recorder: Recorder, logical_id: str) -> None:
    """The function's environment from template.yaml; the next calls are recorded as its."""
    for name, value in stack.functions()[logical_id].environment.items():
        if name != "MODEL_CACHE_DIR":  # the test's temporary folder stays
            monkeypatch.setenv(name, value)
    wiring.services.cache_clear()
    metrics_app.clients.cache_clear()
    recorder.function = logical_id


def run_everything(aws, stack, recorder, monkeypatch, lambda_context) -> None:
    """Each function on its sample events, as the stack would invoke them."""
    aws.ssm.put_parameter(Name=ENV["RETRAINING_THRESHOLD_PARAMETER"], Value="5", Type="String")
    secret = boto3.client("secretsmanager").create_secret(
        Name="inktex/dev/metrics-token", SecretString=TOKEN
    )

    as_function(monkeypatch, stack, recorder, "ApiFunction")
    for name in ("api_health.json", "api_openapi.json", "api_recognize.json"):
        assert api.lambda_handler(load_event(name), lambda_context)["statusCode"] == 200, name
    created = api.lambda_handler(load_event("api_create_prediction.json"), lambda_context)
    assert created["statusCode"] == 201
    pid = json.loads(created["body"])["id"]
    for name, suffix in (("api_get_prediction.json", ""), ("api_get_prediction_input.json", "")):
        event = at_prediction(load_event(name), pid, "/input" if "input" in name else suffix)
        assert api.lambda_handler(event, lambda_context)["statusCode"] == 200, name
    feedback = load_event("api_create_feedback.json")
    body = json.loads(base64.b64decode(feedback["body"]))
    feedback["body"] = base64.b64encode(json.dumps({**body, "prediction_id": pid}).encode())
    feedback["body"] = feedback["body"].decode()
    assert api.lambda_handler(feedback, lambda_context)["statusCode"] in (200, 201, 202)
    for name in (
        "api_list_predictions.json",
        "api_get_models.json",
        "api_get_retraining.json",
        "api_create_upload.json",
    ):
        assert api.lambda_handler(load_event(name), lambda_context)["statusCode"] < 300, name
    deleted = at_prediction(load_event("api_delete_prediction.json"), pid)
    assert api.lambda_handler(deleted, lambda_context)["statusCode"] < 300
    api.lambda_handler(load_event("api_create_prediction.json"), lambda_context)
    erase = as_user(load_event("api_delete_prediction.json"), "user-1")
    erase.update(routeKey="DELETE /me", rawPath="/me", pathParameters=None)
    erase["requestContext"]["http"]["path"] = "/me"
    erase["requestContext"]["routeKey"] = "DELETE /me"
    assert api.lambda_handler(erase, lambda_context)["statusCode"] < 300

    as_function(monkeypatch, stack, recorder, "UploadInferenceFunction")
    png = next(INKML.glob("*.png")).read_bytes()
    upload_inference.lambda_handler(
        aws.put_upload("uploads/user-1/photo one.png", png), lambda_context
    )

    as_function(monkeypatch, stack, recorder, "MetricsFunction")
    assert os.environ["METRICS_TOKEN_SECRET"] == secret["Name"]  # as the template sets it
    for name in ("api_metrics.json", "api_stats.json"):
        assert metrics_app.lambda_handler(load_event(name), lambda_context)["statusCode"] == 200

    as_function(monkeypatch, stack, recorder, "FeedbackTriggerFunction")
    recorder.function = ""
    aws.add_feedback(5, start=100)  # setup, not the function's
    recorder.function = "FeedbackTriggerFunction"
    trigger.lambda_handler(load_event("s3_feedback_pending.json"), lambda_context)

    as_function(monkeypatch, stack, recorder, "TrainingEventsFunction")
    recorder.function = ""
    batches = FeedbackBatches(aws.s3, aws.data_bucket)
    aws.add_feedback(10, start=200)
    if batches.status(1).get("state") is None:
        batches.claim(5)
    batches.claim(5)
    aws.add_candidate()
    recorder.function = "TrainingEventsFunction"
    training_events.lambda_handler(load_event("training_job_completed.json"), lambda_context)
    failed = load_event("training_job_failed.json")
    other = JOB.replace("000001", "000002")
    failed["detail"]["TrainingJobName"] = other
    failed["resources"] = [failed["detail"]["TrainingJobArn"].replace(JOB, other)]
    training_events.lambda_handler(failed, lambda_context)
    recorder.function = ""


def test_every_call_each_function_makes_is_in_its_policy(
    aws, recorder, stack, monkeypatch, lambda_context
):
    run_everything(aws, stack, recorder, monkeypatch, lambda_context)
    # each ran and was heard
    assert {c["function"] for c in recorder.calls} == set(iam_policy.FUNCTIONS)
    missing = iam_policy.denied(stack, recorder.calls)
    assert not missing, json.dumps(missing, indent=1)
    # the measurement saw the calls that matter
    ops = {(c["service"], c["operation"]) for c in recorder.calls}
    assert {("s3", "PutObject"), ("ssm", "PutParameter"), ("sagemaker", "CreateTrainingJob")} <= ops


def test_no_policy_grants_everything_or_a_whole_data_bucket(stack):
    roles = [*iam_policy.FUNCTIONS, "TrainingRole"]
    assert all(iam_policy.statements(stack, r) for r in roles)  # each policy was read
    assert [g for r in roles for g in iam_policy.broad_grants(stack, r)] == []


def test_the_matchers_deny_what_a_policy_does_not_grant(stack):
    def allows(function: str, action: str, resource: str, **keys) -> bool:
        need = Need(action, resource, tuple(keys.items()))
        return iam_policy.allowed(stack, iam_policy.statements(stack, function), need)

    data = "arn:aws:s3:::inktex-data-dev-123456789012-us-east-1"
    assert allows("TrainingEventsFunction", "s3:PutObject", f"{data}/feedback/batches/1/s.json")
    assert not allows("TrainingEventsFunction", "s3:PutObject", f"{data}/predictions/u/x.json")
    assert not allows("TrainingEventsFunction", "s3:DeleteObject", f"{data}/inputs/u/x.png")
    prefix = "s3:prefix"
    assert allows("MetricsFunction", "s3:ListBucket", data, **{prefix: "metrics/deltas/"})
    assert not allows("MetricsFunction", "s3:ListBucket", data, **{prefix: "feedback/"})
    assert not allows("MetricsFunction", "s3:ListBucket", data)  # no prefix: the condition fails
    assert not allows("ApiFunction", "ssm:PutParameter", "x")
    role = stack.get_att("TrainingRole", "Arn")
    assert not allows("FeedbackTriggerFunction", "iam:PassRole", role)  # to whom?
    assert allows(
        "FeedbackTriggerFunction",
        "iam:PassRole",
        role,
        **{"iam:PassedToService": "sagemaker.amazonaws.com"},
    )
    # ...and the unused-grant check reports what no call needed
    put = {"function": "ApiFunction", "service": "s3", "operation": "PutObject"}
    calls = [{**put, "params": {"Bucket": data.rsplit(":", 1)[1], "Key": "metrics/deltas/1"}}]
    idle = iam_policy.unused(stack, calls, ["ApiFunction"])["ApiFunction"]
    assert not any(g.startswith("WriteMetricsDeltas:") for g in idle)
    assert any(g.startswith("ReadWriteOwnData: s3:DeleteObjectVersion on ") for g in idle)
    # a read that found nothing needs the listing too (else S3 answers 403, not 404)
    read = {**put, "operation": "GetObject", "error": "NoSuchKey"}
    read["params"] = {**calls[0]["params"], "Key": "predictions/u/x.json"}
    listing = Need("s3:ListBucket", data, (("s3:prefix", "predictions/u/x.json"),))
    assert listing in iam_policy.needs(stack, read)
    assert listing not in iam_policy.needs(stack, {**read, "error": None})
