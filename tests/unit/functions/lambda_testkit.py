"""Helpers for the functions' tests: the handlers' environment, sample events, fixtures' data.

A module with its own name (not `conftest`), so test modules import it without clashing
with tests/conftest.py, which other test modules import as `conftest`.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

# The handlers' environment, as template.yaml sets it; set before any handler is imported.
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "DATA_BUCKET": "inktex-data-dev-123456789012-us-east-1",
    "MODEL_BUCKET": "inktex-models-dev-123456789012-us-east-1",
    "ALIAS_PARAMETER_PREFIX": "/inktex/dev/aliases",
    "ALIAS_MAX_AGE_S": "30",
    "STAGE": "dev",
    "RETRAINING_THRESHOLD_PARAMETER": "/inktex/dev/settings/retraining-threshold",
    "TRAINING_ROLE_ARN": "arn:aws:iam::123456789012:role/inktex-dev-training",
    "TRAINING_IMAGE": (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311"
    ),
    "TRAINING_SOURCE_URI": "s3://inktex-models-dev-123456789012-us-east-1/code/sourcedir.tar.gz",
    "POWERTOOLS_METRICS_NAMESPACE": "InkTeX",
    "POWERTOOLS_SERVICE_NAME": "inktex-test",
}
for _key, _value in ENV.items():
    os.environ.setdefault(_key, _value)
os.environ.pop("AWS_ENDPOINT_URL", None)  # tests talk to moto in process, never to a server

REPO = Path(__file__).resolve().parents[3]
EVENTS = REPO / "events"
TINY_MODEL = REPO / "tests" / "fixtures" / "tiny_model"
TINY_VERSION = json.loads((TINY_MODEL / "manifest.json").read_text())["version"]
INKML = REPO / "tests" / "fixtures" / "inkml"
FIXTURES_INKML = INKML
# The training job of events/training_job_completed.json and training_job_failed.json.
JOB = "inktex-dev-batch-000001-0a1b2c3d"


def load_event(name: str) -> dict:
    """A sample event from events/ (a fresh copy: tests may edit it)."""
    return copy.deepcopy(json.loads((EVENTS / name).read_text()))


def call_api(event: dict, lambda_context) -> tuple[int, dict]:
    """The API handler's status and decoded JSON body for an event."""
    from functions.api import app as api  # after ENV is set, as every handler

    response = api.lambda_handler(event, lambda_context)
    return response["statusCode"], json.loads(response.get("body") or "null")


def as_user(event: dict, sub: str) -> dict:
    """The event as signed in by user `sub` (the JWT authorizer's claims)."""
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = sub
    return event


def at_prediction(event: dict, pid: str, suffix: str = "") -> dict:
    """An API event for /predictions/{pid} (its `rawPath`, path and path parameter), plus
    `suffix` (such as "/input")."""
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/predictions/{pid}{suffix}"
    event["pathParameters"] = {"prediction_id": pid}
    return event
