"""Durable metrics: what an invocation records, written as one small delta object in S3.

A function keeps nothing between invocations and many containers run at once, so a
prometheus-client registry in memory would count one container's share, then vanish.
Instead each invocation buffers what it observed and, when the handler returns (or raises),
writes it as ONE object `metrics/deltas/<ms>-<random>.json` in the data bucket. The metrics
function folds deltas into `metrics/state.json` a bounded batch at a time
(`functions.common.metrics_store`) and serves the state in Prometheus's text format.

The API, called from the service functions (one line each, no logic there):

    telemetry.prediction(record)              a prediction written (source api or drop)
    telemetry.feedback_received() / feedback_accepted(item) / feedback_rejected(reason)
    telemetry.retraining_queue(pending, threshold)
    telemetry.training_job("started" | "succeeded" | "failed")
    telemetry.promotion("promoted" | "rejected")
    telemetry.model_loaded(seconds)
    telemetry.error(kind)

and `@telemetry.instrument` on each handler, which times the invocation, counts it by route
and status (HTTP) or event source, counts an unhandled exception, and flushes. Recording never
raises: a metric that cannot be written is logged, and the request goes on.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import time
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime

from functions.common.aws import S3Client

log = logging.getLogger(__name__)

DELTAS = "metrics/deltas/"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
LENGTH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "counter" | "histogram" | "gauge"
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()  # histograms: upper bounds, +Inf implied
    known: tuple[dict, ...] = ()  # label sets shown at 0 before anything happens


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "inktex_requests_total",
            "counter",
            "Invocations by function, route (HTTP) or event source, and status.",
            ("function", "route", "status"),
        ),
        Metric(
            "inktex_request_duration_seconds",
            "histogram",
            "Invocation duration by function and route.",
            ("function", "route"),
            LATENCY_BUCKETS,
        ),
        Metric(
            "inktex_predictions_total",
            "counter",
            "Predictions recorded, by model version and source (api, drop).",
            ("model_version", "source"),
        ),
        Metric(
            "inktex_prediction_confidence",
            "histogram",
            "The confidence of recorded predictions.",
            ("model_version",),
            CONFIDENCE_BUCKETS,
        ),
        Metric(
            "inktex_expression_length_tokens",
            "histogram",
            "The length of predicted expressions, in tokens.",
            ("model_version",),
            LENGTH_BUCKETS,
        ),
        Metric("inktex_feedback_received_total", "counter", "Corrections submitted."),
        Metric(
            "inktex_feedback_accepted_total",
            "counter",
            "Corrections stored, by kind (confirmation, correction) and held (not trained on).",
            ("kind", "held"),
        ),
        Metric(
            "inktex_feedback_rejected_total",
            "counter",
            "Corrections refused, by reason.",
            ("reason",),
        ),
        Metric(
            "inktex_feedback_duplicates_total", "counter", "Corrections sent again (no effect)."
        ),
        Metric(
            "inktex_feedback_assessed_total",
            "counter",
            "Accepted corrections, by the model version that made the prediction.",
            ("model_version",),
        ),
        Metric(
            "inktex_feedback_confirmations_total",
            "counter",
            "Accepted corrections that confirm the prediction, by model version.",
            ("model_version",),
        ),
        Metric("inktex_feedback_pending", "gauge", "Corrections waiting for a retraining batch."),
        Metric("inktex_retraining_threshold", "gauge", "Pending corrections that start a job."),
        Metric(
            "inktex_training_jobs_total",
            "counter",
            "Retraining jobs, by state (started, succeeded, failed).",
            ("state",),
            known=tuple({"state": s} for s in ("started", "succeeded", "failed")),
        ),
        Metric(
            "inktex_promotions_total",
            "counter",
            "Evaluation-gate decisions on candidates (promoted, rejected).",
            ("decision",),
            known=tuple({"decision": d} for d in ("promoted", "rejected")),
        ),
        Metric(
            "inktex_model_load_seconds",
            "histogram",
            "Time to fetch and load a model package into a container.",
            ("function",),
            LOAD_BUCKETS,
        ),
        Metric(
            "inktex_errors_total",
            "counter",
            "Errors by function and type.",
            ("function", "type"),
        ),
    )
}


def function_name() -> str:
    """The function's name as template.yaml sets it (POWERTOOLS_SERVICE_NAME)."""
    return (
        os.environ.get("POWERTOOLS_SERVICE_NAME")
        or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        or "unknown"
    )


def series_key(name: str, labels: dict[str, str]) -> str:
    """One series' identity: the metric's name and its labels, canonical JSON."""
    return json.dumps([name, sorted(labels.items())], separators=(",", ":"))


def parse_key(key: str) -> tuple[str, dict[str, str]]:
    name, items = json.loads(key)
    return name, dict(items)


class Delta:
    """What one invocation observed: counter increments, histogram counts, gauge values."""

    def __init__(self) -> None:
        self.counters: dict[str, float] = {}
        self.histograms: dict[str, dict] = {}
        self.gauges: dict[str, float] = {}

    def __bool__(self) -> bool:
        return bool(self.counters or self.histograms or self.gauges)

    def _key(self, name: str, labels: dict) -> str:
        metric = METRICS[name]
        if set(labels) != set(metric.labels):
            raise ValueError(f"{name} takes labels {metric.labels}, not {sorted(labels)}")
        return series_key(name, {k: str(v) for k, v in labels.items()})

    def inc(self, name: str, value: float = 1.0, **labels) -> None:
        key = self._key(name, labels)
        self.counters[key] = self.counters.get(key, 0.0) + value

    def observe(self, name: str, value: float, **labels) -> None:
        key = self._key(name, labels)
        bounds = METRICS[name].buckets
        h = self.histograms.setdefault(key, {"b": [0] * (len(bounds) + 1), "sum": 0.0, "n": 0})
        h["b"][bisect_left(bounds, value)] += 1  # le semantics: value <= bound
        h["sum"] += float(value)
        h["n"] += 1

    def set(self, name: str, value: float, **labels) -> None:
        self.gauges[self._key(name, labels)] = float(value)

    def to_dict(self, function: str, at: datetime) -> dict:
        return {
            "v": 1,
            "function": function,
            "at": at.isoformat(timespec="milliseconds"),
            "counters": self.counters,
            "histograms": self.histograms,
            "gauges": self.gauges,
        }


class _Recorder:
    def __init__(self) -> None:
        self.delta = Delta()
        self.s3: S3Client | None = None
        self.bucket = ""

    def configure(self, s3: S3Client, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def begin(self) -> None:
        self.delta = Delta()  # anything recorded outside an invocation is not this one's

    def flush(self, now: datetime | None = None) -> str | None:
        """Write the buffered delta (if any) as one object; its key, or None."""
        delta, self.delta = self.delta, Delta()
        if not delta or self.s3 is None:
            return None
        now = now or datetime.now(UTC)
        key = f"{DELTAS}{int(now.timestamp() * 1000):013d}-{secrets.token_hex(6)}.json"
        body = json.dumps(delta.to_dict(function_name(), now), separators=(",", ":"))
        try:
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=body.encode(), ContentType="application/json"
            )
        except Exception as exc:  # metrics never fail a request
            log.error("could not write metrics delta %s: %s", key, exc)
            return None
        return key


_recorder = _Recorder()


def configure(s3, bucket: str) -> None:
    """Where deltas go (the data bucket); wiring calls this once per container."""
    _recorder.configure(s3, bucket)


def flush(now: datetime | None = None) -> str | None:
    return _recorder.flush(now)


# --- the recording API ---------------------------------------------------------------------


def _source(record_source: str) -> str:
    return "drop" if record_source == "upload" else "api"


def prediction(record: dict) -> None:
    """A prediction record was written with status ok."""
    d, version = _recorder.delta, record.get("model_version") or "unknown"
    d.inc("inktex_predictions_total", model_version=version, source=_source(record["source"]))
    if record.get("confidence") is not None:
        d.observe("inktex_prediction_confidence", record["confidence"], model_version=version)
    tokens = record.get("tokens")
    if tokens is not None:
        d.observe("inktex_expression_length_tokens", len(tokens), model_version=version)


def feedback_received() -> None:
    _recorder.delta.inc("inktex_feedback_received_total")


def feedback_rejected(reason: str) -> None:
    _recorder.delta.inc("inktex_feedback_rejected_total", reason=reason)


def feedback_duplicate() -> None:
    _recorder.delta.inc("inktex_feedback_duplicates_total")


def feedback_accepted(item: dict) -> None:
    """A correction stored (new, or replacing its prediction's vote); a prediction's first
    vote also counts towards online accuracy for the predicting version (once, so a user
    changing a correction does not move it)."""
    d = _recorder.delta
    kind = item["assessment"]["kind"]
    d.inc("inktex_feedback_accepted_total", kind=kind, held=str(bool(item["held"])).lower())
    if item.get("revisions", 0):
        return
    version = item.get("predicted_model_version") or "unknown"
    d.inc("inktex_feedback_assessed_total", model_version=version)
    if kind == "confirmation":
        d.inc("inktex_feedback_confirmations_total", model_version=version)


def retraining_queue(pending: int, threshold: int) -> None:
    _recorder.delta.set("inktex_feedback_pending", pending)
    _recorder.delta.set("inktex_retraining_threshold", threshold)


def training_job(state: str) -> None:
    _recorder.delta.inc("inktex_training_jobs_total", state=state)


def promotion(decision: str) -> None:
    _recorder.delta.inc("inktex_promotions_total", decision=decision)


def model_loaded(seconds: float) -> None:
    _recorder.delta.observe("inktex_model_load_seconds", seconds, function=function_name())


def error(kind: str) -> None:
    _recorder.delta.inc("inktex_errors_total", function=function_name(), type=kind)


def request(route: str, status: str, seconds: float) -> None:
    d, function = _recorder.delta, function_name()
    d.inc("inktex_requests_total", function=function, route=route, status=status)
    d.observe("inktex_request_duration_seconds", seconds, function=function, route=route)


def _route(event) -> str:
    """The HTTP route key, or the event's source (bounded label values either way)."""
    if isinstance(event, dict):
        if "routeKey" in event:
            return str(event["routeKey"])
        records = event.get("Records") or []
        if records and isinstance(records[0], dict):
            return str(records[0].get("eventSource", "records"))
        if "detail-type" in event:
            return str(event.get("source", "events"))
    return "invoke"


def instrument(handler):
    """Time and count each invocation of a Lambda handler, then write its one delta."""

    @functools.wraps(handler)
    def wrapper(event, context):
        _recorder.begin()
        route, start = _route(event), time.perf_counter()
        try:
            try:
                result = handler(event, context)
            except Exception as exc:
                error(type(exc).__name__)
                request(route, "error", time.perf_counter() - start)
                raise
            status = result.get("statusCode") if isinstance(result, dict) else None
            request(route, str(status or "ok"), time.perf_counter() - start)
            return result
        finally:
            flush()

    return wrapper
