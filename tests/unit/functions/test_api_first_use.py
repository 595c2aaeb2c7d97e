"""What a new user meets first (issue 21): the OpenAPI document, the metrics token's 401, the
local throttle's 429 (the limits, Retry-After) and the local stack's own limits."""

from __future__ import annotations

import json

import boto3
import pytest
from lambda_testkit import load_event

from functions.api import app as api
from functions.metrics import app as metrics_app
from local_stack.gateway import TokenBucket
from local_stack.template import Throttle


def call(handler, event: dict, lambda_context) -> tuple[int, dict]:
    response = handler(event, lambda_context)
    return response["statusCode"], json.loads(response.get("body") or "null")


def test_openapi_lists_the_metrics_functions_routes_as_that_function_declares_them(
    aws, production, lambda_context
):
    status, document = call(api.lambda_handler, load_event("api_openapi.json"), lambda_context)
    assert status == 200
    assert {"/stats", "/metrics", "/recognize", "/retraining"} <= set(document["paths"])
    own = json.loads(metrics_app.app.get_openapi_json_schema(title="x", version="1"))["paths"]
    for path, operations in own.items():
        for method, operation in operations.items():
            listed = document["paths"][path][method]
            assert listed["summary"] == operation["summary"], path
            assert listed["operationId"] == operation["operationId"], path
            params = [{**p, "schema": {k: v for k, v in p["schema"].items() if k != "title"}}
                      for p in operation.get("parameters", [])]  # fmt: skip
            assert listed.get("parameters", []) == params, path
    assert document["paths"]["/metrics"]["get"]["security"] == [{"metricsToken": []}]
    assert document["components"]["securitySchemes"]["metricsToken"]["scheme"] == "bearer"


@pytest.fixture
def metrics_token(aws, monkeypatch):
    boto3.client("secretsmanager").create_secret(Name="inktex/dev/metrics-token", SecretString="t")
    monkeypatch.setenv("METRICS_TOKEN_SECRET", "inktex/dev/metrics-token")
    metrics_app.clients.cache_clear()
    yield
    metrics_app.clients.cache_clear()


@pytest.mark.parametrize("hint", ["", "`inktex info` shows the file that holds the token"])
def test_the_metrics_401_says_where_the_token_is_when_configured(
    metrics_token, monkeypatch, lambda_context, hint
):
    monkeypatch.setattr(metrics_app, "TOKEN_HINT", hint)
    event = load_event("api_metrics.json")
    event["headers"]["authorization"] = "Bearer wrong"
    status, body = call(metrics_app.lambda_handler, event, lambda_context)
    reason = "send the metrics token: Authorization: Bearer <token>"
    assert status == 401
    assert body["message"] == (f"{reason} ({hint})" if hint else reason)


def test_the_local_stack_tells_the_metrics_function_where_its_token_is():
    from local_stack.stack import LocalSettings, LocalStack

    env = LocalStack(LocalSettings()).function_env("MetricsFunction", "http://127.0.0.1:1")
    assert "inktex info" in env["METRICS_TOKEN_HINT"]


def test_a_throttled_request_hears_the_limits_and_when_to_retry():
    bucket = TokenBucket(Throttle(rate=2, burst=5))
    assert all(bucket.take() for _ in range(5)) and not bucket.take()
    assert bucket.retry_after() == 1  # one token back within half a second, rounded up
    assert bucket.refusal("POST /recognize") == (
        "Too Many Requests: POST /recognize allows 2 requests a second (bursts of up to 5); "
        "retry after 1 s"
    )


def test_the_local_stack_throttles_recognize_less_than_the_cloud():
    from lambda_testkit import REPO

    from local_stack.stack import LocalSettings, LocalStack
    from local_stack.template import Stack

    cloud = Stack.from_file(REPO / "template.yaml").http_api().throttle_for("POST /recognize")
    local = LocalStack(LocalSettings()).stack.http_api().throttle_for("POST /recognize")
    assert (cloud.rate, cloud.burst) == (2, 5)  # what README.md states
    assert local.rate > cloud.rate and local.burst > cloud.burst
