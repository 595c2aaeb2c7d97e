"""Least privilege, measured (issue 11): each function's handler runs on its sample events
(events/) against moto, with the environment template.yaml gives it; a botocore hook on
boto3's default session (so on every client the functions build, `functions.common.wiring`
and the metrics function's alike) records each AWS operation with its resource; each one,
mapped to the IAM action(s) it needs, must be allowed by that function's own policy in
template.yaml, read with the local stack's template reader (`!Sub`, `!Ref`, `!GetAtt`
resolved). And no statement grants Action "*" or a wildcard resource on a data bucket.

CloudWatch Logs and X-Ray (which no hook sees: the Lambda runtime writes them) are outside.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
from collections import defaultdict
from pathlib import Path

import boto3
import pytest
from lambda_testkit import ENV, INKML, load_event
from test_api import as_user, at
from test_retraining import add_feedback
from test_training_events import JOB, candidate
from test_upload_inference import put_upload

from functions.api import app as api
from functions.common import wiring
from functions.common.retraining import FeedbackBatches
from functions.feedback_trigger import app as trigger
from functions.local.template import Stack
from functions.metrics import app as metrics_app
from functions.training_events import app as training_events
from functions.upload_inference import app as upload_inference

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"
ACCOUNT, REGION = "123456789012", "us-east-1"
TOKEN = "example-metrics-token"

# S3 operations whose IAM action has another name (anything else: s3:<Operation>).
S3_ACTIONS = {
    "HeadObject": "GetObject",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "HeadBucket": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "AbortMultipartUpload": "AbortMultipartUpload",
}


def s3_needs(operation: str, params: dict) -> list[tuple[str, str, dict]]:
    """(IAM action, resource ARN, condition keys) that an S3 call needs."""
    bucket, key = params.get("Bucket", ""), params.get("Key")
    action = S3_ACTIONS.get(operation, operation)
    if operation in ("GetObject", "HeadObject", "DeleteObject") and params.get("VersionId"):
        action += "Version"
    if operation == "CopyObject":
        source = params["CopySource"]
        if isinstance(source, str):
            source = dict(zip(("Bucket", "Key"), source.lstrip("/").split("/", 1), strict=True))
        get = "GetObjectVersion" if source.get("VersionId") else "GetObject"
        return [
            (f"s3:{get}", f"arn:aws:s3:::{source['Bucket']}/{source['Key']}", {}),
            ("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}", {}),
        ]
    if operation == "DeleteObjects":  # one s3:DeleteObject(Version) per key
        return [
            (
                "s3:DeleteObjectVersion" if o.get("VersionId") else "s3:DeleteObject",
                f"arn:aws:s3:::{bucket}/{o['Key']}",
                {},
            )
            for o in params["Delete"]["Objects"]
        ]
    if key is None:  # a bucket-level call: the listing's prefix is a condition key
        return [(f"s3:{action}", f"arn:aws:s3:::{bucket}", {"s3:prefix": params.get("Prefix", "")})]
    return [(f"s3:{action}", f"arn:aws:s3:::{bucket}/{key}", {})]


def secret_arn(secret: str, suffix: str = "AbCdEf") -> str:
    """A secret's ARN (ending in a random 6-character suffix) from its name or ARN: `!Ref`
    gives the ARN in AWS, the name in the local stack; a call may name it either way."""
    if secret.startswith("arn:"):
        return secret
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret}-{suffix}"


def needs(service: str, operation: str, params: dict) -> list[tuple[str, str, dict]]:
    if service == "s3":
        return s3_needs(operation, params)
    if service == "ssm":
        name = params.get("Name", "").lstrip("/")
        return [(f"ssm:{operation}", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{name}", {})]
    if service == "secretsmanager":
        return [(f"secretsmanager:{operation}", secret_arn(params["SecretId"]), {})]
    if service == "sagemaker" and operation == "CreateTrainingJob":
        job = params["TrainingJobName"].lower()
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{job}"
        out = [("sagemaker:CreateTrainingJob", arn, {})]
        if params.get("Tags"):
            out.append(("sagemaker:AddTags", arn, {}))
        out.append(("iam:PassRole", params["RoleArn"], {}))
        return out
    return [(f"{service}:{operation}", "*", {})]


class Recorder:
    """A `before-parameter-build` hook keeps each call's parameters in its request context;
    the `before-call` hook then records (function, service, operation, parameters)."""

    def __init__(self):
        self.function = ""
        self.calls: dict[str, list[tuple[str, str, dict]]] = defaultdict(list)

    def keep_params(self, params, context, **_):
        context["least_privilege_params"] = dict(params)

    def before_call(self, model, context, **_):
        if self.function:
            service = model.service_model.service_name
            params = context.get("least_privilege_params", {})
            self.calls[self.function].append((service, model.name, params))


@pytest.fixture
def recorder(aws, production, monkeypatch):
    rec = Recorder()
    events = boto3._get_default_session().events  # every client built from now on copies it
    events.register("before-parameter-build", rec.keep_params)
    events.register("before-call", rec.before_call)
    wiring.services.cache_clear()  # rebuilt after the hooks, so they see them
    metrics_app.clients.cache_clear()
    yield rec
    events.unregister("before-parameter-build", rec.keep_params)
    events.unregister("before-call", rec.before_call)
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
        event = at(load_event(name), pid, "/input" if "input" in name else suffix)
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
    deleted = at(load_event("api_delete_prediction.json"), pid)
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
        put_upload(aws, "uploads/user-1/photo one.png", png), lambda_context
    )

    as_function(monkeypatch, stack, recorder, "MetricsFunction")
    assert os.environ["METRICS_TOKEN_SECRET"] == secret["Name"]  # as the template sets it
    for name in ("api_metrics.json", "api_stats.json"):
        assert metrics_app.lambda_handler(load_event(name), lambda_context)["statusCode"] == 200

    as_function(monkeypatch, stack, recorder, "FeedbackTriggerFunction")
    recorder.function = ""
    add_feedback(aws, 5, start=100)  # setup, not the function's
    recorder.function = "FeedbackTriggerFunction"
    trigger.lambda_handler(load_event("s3_feedback_pending.json"), lambda_context)

    as_function(monkeypatch, stack, recorder, "TrainingEventsFunction")
    recorder.function = ""
    batches = FeedbackBatches(aws.s3, aws.data_bucket)
    add_feedback(aws, 10, start=200)
    if batches.status(1).get("state") is None:
        batches.claim(5)
    batches.claim(5)
    candidate(aws)
    recorder.function = "TrainingEventsFunction"
    training_events.lambda_handler(load_event("training_job_completed.json"), lambda_context)
    failed = load_event("training_job_failed.json")
    other = JOB.replace("000001", "000002")
    failed["detail"]["TrainingJobName"] = other
    failed["resources"] = [failed["detail"]["TrainingJobArn"].replace(JOB, other)]
    training_events.lambda_handler(failed, lambda_context)
    recorder.function = ""


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def statements(stack: Stack, logical_id: str) -> list[dict]:
    props = stack.resources[logical_id]["Properties"]
    found = []
    for policy in stack.resolve(props.get("Policies") or []):
        if isinstance(policy, dict):
            found += [s for s in policy.get("Statement", []) if s.get("Effect") == "Allow"]
    return found


def condition_holds(statement: dict, keys: dict) -> bool:
    for operator, tests in (statement.get("Condition") or {}).items():
        for key, wanted in tests.items():
            if key not in keys:
                continue  # a key the call does not set (iam:PassedToService, say)
            match = fnmatch.fnmatchcase if operator == "StringLike" else str.__eq__
            if not any(match(keys[key], w) for w in as_list(wanted)):
                return False
    return True


def allowed(stmts: list[dict], action: str, resource: str, keys: dict) -> bool:
    for s in stmts:
        if not any(fnmatch.fnmatchcase(action, a) for a in as_list(s["Action"])):
            continue
        patterns = as_list(s["Resource"])
        if action.startswith("secretsmanager:"):
            patterns = [secret_arn(r, "??????") for r in patterns]
        if any(fnmatch.fnmatchcase(resource, p) for p in patterns) and condition_holds(s, keys):
            return True
    return False


FUNCTIONS = (
    "ApiFunction",
    "UploadInferenceFunction",
    "MetricsFunction",
    "FeedbackTriggerFunction",
    "TrainingEventsFunction",
)


def test_every_call_each_function_makes_is_in_its_policy(
    aws, recorder, stack, monkeypatch, lambda_context
):
    run_everything(aws, stack, recorder, monkeypatch, lambda_context)
    assert set(recorder.calls) == set(FUNCTIONS)  # each one ran and was heard
    denied = defaultdict(set)
    for function, calls in recorder.calls.items():
        stmts = statements(stack, function)
        for service, operation, params in calls:
            for action, resource, keys in needs(service, operation, params):
                if not allowed(stmts, action, resource, keys):
                    denied[function].add(f"{action} on {resource} {keys or ''}".strip())
    assert not denied, json.dumps({f: sorted(d) for f, d in denied.items()}, indent=1)
    # the measurement saw the calls that matter
    ops = {(s, o) for calls in recorder.calls.values() for s, o, _ in calls}
    assert {("s3", "PutObject"), ("ssm", "PutParameter"), ("sagemaker", "CreateTrainingJob")} <= ops


DATA_BUCKETS = ("inktex-data-", "inktex-models-", "inktex-dvc-")


def test_no_policy_grants_everything_or_a_whole_data_bucket(stack):
    for logical_id in [*FUNCTIONS, "TrainingRole"]:
        if logical_id not in stack.resources:
            continue
        for s in statements(stack, logical_id):
            actions, resources = as_list(s["Action"]), as_list(s.get("Resource", []))
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), s
            assert "*" not in resources, (logical_id, s)
            for r in resources:
                if isinstance(r, str) and r.startswith("arn:aws:s3:::"):
                    bucket, _, key = r.removeprefix("arn:aws:s3:::").partition("/")
                    assert not (bucket.startswith(DATA_BUCKETS) and key == "*"), (logical_id, s)
                    assert "*" not in bucket, (logical_id, s)


def test_the_matcher_denies_what_a_policy_does_not_grant(stack):
    data = "arn:aws:s3:::inktex-data-dev-123456789012-us-east-1"
    events = statements(stack, "TrainingEventsFunction")
    assert allowed(events, "s3:PutObject", f"{data}/feedback/batches/1/status.json", {})
    assert not allowed(events, "s3:PutObject", f"{data}/predictions/user-1/x.json", {})
    assert not allowed(events, "s3:DeleteObject", f"{data}/inputs/user-1/x.png", {})
    metrics = statements(stack, "MetricsFunction")
    assert allowed(metrics, "s3:ListBucket", data, {"s3:prefix": "metrics/deltas/"})
    assert not allowed(metrics, "s3:ListBucket", data, {"s3:prefix": "feedback/"})
    assert not allowed(statements(stack, "ApiFunction"), "ssm:PutParameter", "x", {})
