"""Durable metrics: deltas through the real recording code, compaction, GET /metrics, /stats."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import boto3
import pytest
from lambda_testkit import load_event
from prometheus_client.parser import text_string_to_metric_families

from functions.api import app as api
from functions.common import telemetry
from functions.common.metrics_store import STATE_KEY, MetricsStore, hourly
from functions.metrics import app as metrics_app

TOKEN = "example-metrics-token"


@pytest.fixture
def metrics_env(aws, monkeypatch):
    """The metrics token secret as template.yaml creates it, and a fresh metrics function."""
    boto3.client("secretsmanager").create_secret(
        Name="inktex/dev/metrics-token", SecretString=TOKEN
    )
    monkeypatch.setenv("METRICS_TOKEN_SECRET", "inktex/dev/metrics-token")
    metrics_app.clients.cache_clear()
    telemetry.configure(aws.s3, aws.data_bucket)
    yield aws
    metrics_app.clients.cache_clear()


def scrape(lambda_context, token: str | None = TOKEN) -> tuple[int, str]:
    event = load_event("api_metrics.json")
    if token is None:
        del event["headers"]["authorization"]
    else:
        event["headers"]["authorization"] = f"Bearer {token}"
    response = metrics_app.lambda_handler(event, lambda_context)
    return response["statusCode"], response["body"]


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def record_predictions(n: int, version: str = "v1") -> None:
    for i in range(n):
        telemetry.prediction(
            {"source": "api", "model_version": version, "confidence": 0.9, "tokens": ["x"] * i}
        )
        telemetry.flush()


class CountingS3:
    """Counts the S3 calls a client makes (botocore's before-call event)."""

    def __init__(self, s3):
        self.calls: list[str] = []
        s3.meta.events.register("before-call.s3", self._count)

    def _count(self, model, **kwargs):
        self.calls.append(model.name)

    def during(self, fn):
        self.calls.clear()
        result = fn()
        return result, list(self.calls)


def test_metrics_need_the_bearer_token(metrics_env, lambda_context):
    assert scrape(lambda_context, None)[0] == 401
    assert scrape(lambda_context, "wrong")[0] == 401
    status, body = scrape(lambda_context)
    assert status == 200
    got = samples(body)
    assert got[("inktex_training_jobs_total", (("state", "failed"),))] == 0
    assert ("inktex_production_model_info", (("version", "none"),)) in got


def test_a_burst_through_the_api_reads_exactly_n_predictions_and_m_corrections(
    metrics_env, production, lambda_context
):
    n, m = 7, 3
    ids = []
    for _ in range(n):
        event = load_event("api_create_prediction.json")
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "burst-user"
        response = api.lambda_handler(event, lambda_context)
        assert response["statusCode"] == 201, response
        ids.append(json.loads(response["body"])["id"])
    for pid in ids[:m]:
        event = load_event("api_create_feedback.json")
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "burst-user"
        record = json.loads(response["body"])  # confirm the prediction: same LaTeX
        payload = {"prediction_id": pid, "latex": record["latex"] or "x", "consent": True}
        event["body"] = base64.b64encode(json.dumps(payload).encode()).decode()
        answer = api.lambda_handler(event, lambda_context)
        assert answer["statusCode"] == 201, answer
    status, body = scrape(lambda_context)
    assert status == 200
    got = samples(body)
    key = ("inktex_predictions_total", (("model_version", production), ("source", "api")))
    assert got[key] == n
    assert got[("inktex_feedback_received_total", ())] == m
    accepted = sum(v for (name, _), v in got.items() if name == "inktex_feedback_accepted_total")
    assert accepted == m
    route = (("function", "inktex-test"), ("route", "POST /predictions"), ("status", "201"))
    assert got[("inktex_requests_total", route)] == n
    assert got[("inktex_production_model_info", (("version", production),))] == 1
    if record["latex"]:  # confirmations of what the model said
        assert got[("inktex_online_accuracy", (("model_version", production),))] == 1.0
    hist = ("inktex_prediction_confidence_count", (("model_version", production),))
    assert got[hist] == n
    # a second scrape folds nothing new and reads the same
    assert samples(scrape(lambda_context)[1])[key] == n


def test_a_scrape_costs_the_same_after_10_and_after_1000_predictions(metrics_env):
    store = MetricsStore(metrics_env.s3, metrics_env.data_bucket, batch=500)
    counter = CountingS3(metrics_env.s3)

    def settle():
        while metrics_env.s3.list_objects_v2(
            Bucket=metrics_env.data_bucket, Prefix="metrics/deltas/"
        ).get("KeyCount"):
            store.compact()
        store.compact()  # clears the last batch's names

    def cost_of_next_scrape() -> tuple[int, list[str]]:
        record_predictions(3)
        state, calls = counter.during(store.compact)
        return state["deltas_folded"], calls

    record_predictions(10)
    settle()
    folded_10, calls_10 = cost_of_next_scrape()
    record_predictions(990)
    settle()
    folded_1000, calls_1000 = cost_of_next_scrape()
    assert (folded_10, folded_1000) == (13, 1006)
    assert calls_10 == calls_1000  # history costs nothing
    assert calls_10.count("GetObject") == 1 + 3 and calls_10.count("ListObjectsV2") == 1
    # and a backlog is folded a bounded batch per scrape
    record_predictions(600)
    _, calls = counter.during(store.compact)
    assert calls.count("GetObject") == 1 + 500 and len(calls) <= 6 + 500
    state = store.compact()
    assert state["deltas_folded"] == 1606
    total = sum(v for k, v in state["counters"].items() if "inktex_predictions_total" in k)
    assert total == 1606


def test_concurrent_compactions_count_every_delta_once(metrics_env):
    """A compaction that loses the race to another serves the winner's state."""
    bucket = metrics_env.data_bucket
    record_predictions(5)
    winner = MetricsStore(metrics_env.s3, bucket)

    class Racing(MetricsStore):
        raced = False

        def _write(self, state, etag):
            if not self.raced:  # the other compaction folds the same deltas and writes first
                self.raced = True
                winner.compact()
            return super()._write(state, etag)

    served = Racing(metrics_env.s3, bucket).compact()
    assert served["deltas_folded"] == 5
    record_predictions(2)
    state = MetricsStore(metrics_env.s3, bucket).compact()
    assert state["deltas_folded"] == 7
    total = sum(v for k, v in state["counters"].items() if "inktex_predictions_total" in k)
    assert total == 7
    stored = json.loads(metrics_env.s3.get_object(Bucket=bucket, Key=STATE_KEY)["Body"].read())
    assert stored["deltas_folded"] == 7


def test_a_failing_handler_counts_an_error_and_still_writes_its_delta(metrics_env):
    @telemetry.instrument
    def handler(event, context):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        handler({"Records": [{"eventSource": "aws:s3"}]}, None)
    state = MetricsStore(metrics_env.s3, metrics_env.data_bucket).compact()
    errors = telemetry.series_key(
        "inktex_errors_total", {"function": "inktex-test", "type": "RuntimeError"}
    )
    assert state["counters"][errors] == 1
    route = {"function": "inktex-test", "route": "aws:s3", "status": "error"}
    assert state["counters"][telemetry.series_key("inktex_requests_total", route)] == 1


def test_stats_are_hourly_and_signed_in_only(metrics_env, lambda_context):
    record_predictions(4)
    event = load_event("api_stats.json")
    response = metrics_app.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert len(body["hours"]) == 24
    assert body["hours"][-1]["predictions"] == 4
    assert body["hours"][-1]["mean_confidence"] == pytest.approx(0.9)
    del event["requestContext"]["authorizer"]
    assert metrics_app.lambda_handler(event, lambda_context)["statusCode"] == 401


def test_gauges_keep_the_latest_value_and_hours_sum():
    from functions.common.metrics_store import empty_state, fold

    state = empty_state()
    key = telemetry.series_key("inktex_feedback_pending", {})
    late = {"at": "2025-06-01T10:30:00.000+00:00", "gauges": {key: 7.0}, "counters": {}}
    early = {"at": "2025-06-01T10:10:00.000+00:00", "gauges": {key: 3.0}, "counters": {}}
    fold(state, late)
    fold(state, early)  # folded later, observed earlier: does not win
    assert state["gauges"][key][0] == 7.0
    now = datetime(2025, 6, 1, 11, 5, tzinfo=UTC)
    rows = hourly(state, 2, now)
    assert [r["hour"] for r in rows] == ["2025-06-01T10:00:00Z", "2025-06-01T11:00:00Z"]
