"""The HTTP API (API Gateway v2): recognition, the caller's history, uploads, models, health.

Routes are small; the work is in `functions.common`. The JWT authorizer guards whole routes
(template.yaml), so `POST /recognize` (anonymous) and `POST /predictions` (signed in) are
separate routes over the same service function. Errors are JSON `{"message": reason}`.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import traceback
from typing import Annotated, Literal

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from functions.common import (
    erasure,
    feedback,
    limits,
    promotion,
    retraining,
    service,
    submissions,
    telemetry,
    web_model,
    wiring,
)
from functions.common.models import ModelUnavailable
from functions.common.store import ID_PATTERN
from inktex.errors import InputError, RequestTooLargeError

logger = Logger()
metrics = Metrics()
# JSON bodies are size- and depth-checked before Powertools parses them (functions/common/limits)
app = APIGatewayHttpResolver(
    enable_validation=True,
    json_body_deserializer=limits.request_json_deserializer(
        lambda: wiring.services().settings.max_body_bytes
    ),
)
wiring.on_model_failure(
    lambda version, reason: metrics.add_metric(
        name="ModelLoadFailed", unit=MetricUnit.Count, value=1
    )
)

PredictionId = Annotated[str, Path(pattern=ID_PATTERN, description="a prediction id")]
UPLOAD_TYPES = Literal[
    "image/png", "image/jpeg", "image/webp", "image/bmp", "application/inkml+xml"
]


class FeedbackRequest(BaseModel):
    prediction_id: str = Field(pattern=ID_PATTERN, description="the prediction corrected")
    latex: str = Field(
        max_length=limits.MAX_LATEX_CHARS, description="what the input really shows, as LaTeX"
    )
    consent: bool = Field(description="may InkTeX train its model on this correction?")


class UploadRequest(BaseModel):
    filename: str = Field(min_length=1, max_length=200, description="the photo's file name")
    content_type: UPLOAD_TYPES = "image/jpeg"


def _json(status: int, payload: dict | None) -> Response:
    body = None if payload is None else json.dumps(payload)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def _error(status: int, message: str) -> Response:
    return _json(status, {"message": message})


def _owner() -> str:
    claims = app.current_event.request_context.authorizer.jwt_claim or {}
    sub = claims.get("sub")
    if not sub:
        raise _Unauthorized("sign in first: this route needs a bearer token")
    return sub


def _groups() -> list[str]:
    claims = app.current_event.request_context.authorizer.jwt_claim or {}
    groups = claims.get("cognito:groups") or []
    if isinstance(groups, str):  # HTTP APIs pass list claims as "[a b]"
        groups = groups.strip("[]").replace(",", " ").split()
    return list(groups)


class _Unauthorized(InputError):
    status = 401


class _Forbidden(InputError):
    status = 403


def _submission() -> submissions.Submission:
    """The request's input. Content-Type picks the envelope (raw bytes, JSON, multipart,
    InkML); an image's type is always sniffed from its bytes, never taken from a header."""
    event = app.current_event
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode()
    limit = wiring.services().settings.max_body_bytes
    if len(body) > limit:
        raise RequestTooLargeError(
            f"the request body is {len(body)} bytes; the limit is {limit}: "
            "send a smaller image, or a large photo through POST /uploads"
        )
    return submissions.from_http(body, event.headers.get("content-type"))


_INTERNAL = ("owner", "previous_versions", "input_version")  # bookkeeping, not for clients


def _public(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in _INTERNAL}


def _recognize(owner: str | None, source: str) -> dict:
    services = wiring.services()
    submission = _submission()  # refuse bad input before touching the model
    record = service.create_prediction(
        submission, owner, services.models.get(), services.store, source=source
    )
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name="RecognitionLatency", unit=MetricUnit.Milliseconds, value=record["latency_ms"]
    )
    logger.info("recognised", extra={"id": record["id"], "model_version": record["model_version"]})
    return record


@app.post("/recognize", summary="Recognise handwriting without signing in (kept in no history)")
def recognize():
    return _json(200, _public(_recognize(None, "recognize")))


@app.post("/predictions", summary="Recognise handwriting and record it in the caller's history")
def create_prediction():
    return _json(201, _public(_recognize(_owner(), "api")))


@app.get("/predictions", summary="The caller's history, newest first")
def list_predictions(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
):
    items, next_cursor = wiring.services().store.list_records(_owner(), limit, cursor)
    return _json(200, {"items": [_public(r) for r in items], "next_cursor": next_cursor})


@app.get("/predictions/<prediction_id>", summary="One prediction of the caller's")
def get_prediction(prediction_id: PredictionId):
    return _json(200, _public(wiring.services().store.get_record(_owner(), prediction_id)))


@app.get("/predictions/<prediction_id>/input", summary="A prediction's input (ink as a PNG)")
def get_prediction_input(
    prediction_id: PredictionId,
    original: Annotated[bool, Query(description="the stored strokes/InkML, not a PNG")] = False,
):
    store = wiring.services().store
    record = store.get_record(_owner(), prediction_id)
    data, content_type = store.get_input(record)
    kind = record.get("input_kind", "image")
    if kind != "image" and not original:
        ext = {"strokes": ".json", "inkml": ".inkml"}[kind]
        submission = submissions.Submission(kind, data, content_type, ext)
        data, content_type = submissions.input_png(submission), "image/png"
    # Stored inputs are shown as images only: never sniffed into HTML, never active content.
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'"}
    return Response(status_code=200, content_type=content_type, body=data, headers=headers)


@app.delete("/predictions/<prediction_id>", summary="Erase a prediction and its input")
def delete_prediction(prediction_id: PredictionId):
    wiring.services().store.delete(_owner(), prediction_id)
    return Response(status_code=204)


@app.delete("/me", summary="Erase all of the caller's data that no training has used yet")
def delete_me():
    """Predictions, inputs, uploads and corrections not yet claimed for training; corrections
    already used in training stay with their batch (docs/security.md)."""
    owner = _owner()
    services = wiring.services()
    result = erasure.erase_user(services.s3, services.settings.data_bucket, owner)
    logger.info("erased a user's data", extra=result)
    return _json(200, result)


@app.post("/uploads", summary="A presigned PUT URL for a large photo; the drop function predicts")
def create_upload(upload: UploadRequest):
    services = wiring.services()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", upload.filename).strip("._") or "upload"
    key = f"uploads/{_owner()}/{secrets.token_hex(8)}-{name}"
    expires = services.settings.upload_url_expiry_s
    url = services.s3.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": services.settings.data_bucket,
            "Key": key,
            "ContentType": upload.content_type,
        },
        ExpiresIn=expires,
    )
    headers = {"Content-Type": upload.content_type}
    return _json(
        201, {"method": "PUT", "url": url, "key": key, "headers": headers, "expires_in": expires}
    )


@app.post("/feedback", summary="Correct (or confirm) one of the caller's predictions")
def create_feedback(correction: FeedbackRequest):
    owner = _owner()
    services = wiring.services()
    created, item = feedback.submit_feedback(
        owner,
        correction.prediction_id,
        correction.latex,
        correction.consent,
        services.store,
        services.feedback,
        services.models.get(),
        max_revisions=services.settings.max_correction_revisions,
    )
    outcome = "Received" if created else "Duplicate"
    metrics.add_metric(name=f"Feedback{outcome}", unit=MetricUnit.Count, value=1)
    if created and item["held"]:
        metrics.add_metric(name="FeedbackHeld", unit=MetricUnit.Count, value=1)
    if created:  # the online accuracy (CloudWatch alarm: template.yaml)
        confirmed = item["assessment"]["kind"] == "confirmation"
        metrics.add_metric(name="FeedbackAssessed", unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name="FeedbackConfirmations", unit=MetricUnit.Count, value=int(confirmed)
        )
    logger.info("feedback", extra={"feedback_id": item["id"], "new": created, "held": item["held"]})
    return _json(201 if created else 200, {**_public(item), "duplicate": not created})


@app.get("/retraining", summary="Examples waiting to retrain on, the threshold, the job, decisions")
def get_retraining():
    _owner()
    services = wiring.services()
    decisions = promotion.Decisions(services.s3, services.settings.model_bucket).latest()
    state = retraining.retraining_state(services.settings, services.s3, services.ssm, decisions)
    return _json(200, state)


@app.get("/models", summary="The production model's version and metrics")
def get_models():
    services = wiring.services()
    production = services.registry.alias("production")
    version = production.version
    body = {
        "production": {
            "version": version or None,
            "since": production.moved_at or None,
            "metrics": services.registry.metrics(version) if version else {},
        },
        "latest_decision": _decision_summary(
            promotion.Decisions(services.s3, services.settings.model_bucket).latest(1)
        ),
        "loaded_version": services.models.loaded_version,
    }
    return _json(200, body)


def _decision_summary(decisions: list[dict]) -> dict | None:
    """The latest promotion decision, without lineage (this route is public)."""
    if not decisions:
        return None
    d = decisions[0]
    summary = {k: d.get(k) for k in ("decision", "reason", "decided_at", "job", "metric")}
    for role in ("candidate", "production"):
        if role in d:
            summary[role] = {k: d[role].get(k) for k in ("version", "eval", "heldout")}
    return summary


@app.get("/models/registry", summary="The registry's aliases, their history and packages")
def get_registry():
    _owner()
    services = wiring.services()
    if services.settings.operators_group not in _groups():
        raise _Forbidden(f"only the {services.settings.operators_group} group sees the registry")
    return _json(200, services.registry.describe())


def _web(answer: web_model.WebAnswer) -> Response:
    return Response(answer.status, answer.content_type, answer.body, answer.headers)


@app.get("/models/production/web", summary="The production model's graphs for the browser")
def get_web_model():
    services = wiring.services()
    return _web(
        web_model.manifest_answer(
            web_model.for_services(services),
            services.production_version(),
            app.current_event.headers.get("if-none-match"),
        )
    )


@app.get("/models/<version>/web/<name>", summary="One ONNX graph of the production model")
def get_web_model_file(
    version: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")],
    name: Annotated[str, Path(pattern=r"^[a-z_]{1,32}\.onnx$")],
):
    services = wiring.services()
    return _web(
        web_model.graph_answer(
            web_model.for_services(services),
            services.production_version(),
            version,
            name,
            app.current_event.headers.get("if-none-match"),
        )
    )


@app.get("/health", summary="Liveness: answers without loading a model")
def health():
    return _json(200, {"status": "ok", "loaded_version": wiring.services().models.loaded_version})


# The routes the metrics function serves behind the same HTTP API (template.yaml), so that
# one document describes the whole API. That function's code is not in this one's package;
# tests/unit/functions/test_api_first_use.py keeps these equal to its own routes.
METRICS_ROUTES = {
    "/metrics": {
        "get": {
            "summary": "The durable metrics, in Prometheus's text format (bearer token)",
            "operationId": "scrape_metrics_get",
            "security": [{"metricsToken": []}],
            "responses": {
                "200": {"description": "Prometheus text", "content": {"text/plain": {}}},
                "401": {"description": "No token, or the wrong one"},
            },
        }
    },
    "/stats": {
        "get": {
            "summary": "Hourly sums of the metrics, for the web UI's charts (signed in)",
            "operationId": "stats_stats_get",
            "parameters": [
                {
                    "required": False,
                    "schema": {"type": "integer", "maximum": 336, "minimum": 1, "default": 48},
                    "name": "hours",
                    "in": "query",
                }
            ],
            "responses": {
                "200": {"description": "{hours: [...], production_version, updated_at}"},
                "401": {"description": "Not signed in"},
            },
        }
    },
}


@app.get("/openapi.json", summary="This API's OpenAPI document", include_in_schema=False)
def openapi():
    schema = json.loads(
        app.get_openapi_json_schema(title="InkTeX", version="1", description=__doc__)
    )
    schema["paths"].update(METRICS_ROUTES)
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["metricsToken"] = {"type": "http", "scheme": "bearer"}
    return _json(200, schema)


@app.exception_handler(InputError)
def input_error(exc: InputError) -> Response:
    logger.info("refused", extra={"reason": str(exc), "status": exc.status})
    return _error(exc.status, str(exc))


@app.exception_handler(UnicodeDecodeError)
def not_text(exc: UnicodeDecodeError) -> Response:
    """A JSON route's body that is not UTF-8 (Powertools decodes it before any route code)."""
    return _error(400, f"the body is not UTF-8 text ({exc.reason} at byte {exc.start}): send JSON")


@app.exception_handler(ValueError)
def unreadable_envelope(exc: ValueError) -> Response:
    """Powertools' request validation raises a bare ValueError for a form body it cannot
    split (multipart/form-data without a boundary): the client's error. Any other
    ValueError is ours, and stays a 500."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not any(f.filename.endswith("openapi_validation.py") for f in frames):
        raise exc
    return _error(400, f"the request body cannot be read as its Content-Type says: {exc}")


@app.exception_handler(web_model.WebModelUnavailable)
def web_model_unavailable(exc: web_model.WebModelUnavailable) -> Response:
    return _error(503, str(exc))


@app.exception_handler(ModelUnavailable)
def model_unavailable(exc: ModelUnavailable) -> Response:
    metrics.add_metric(name="ModelUnavailable", unit=MetricUnit.Count, value=1)
    return _error(503, str(exc))


@app.exception_handler(RequestValidationError)
def validation_error(exc: RequestValidationError) -> Response:
    reasons = [
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
        + (f" ({err['ctx']['error']})" if "error" in (err.get("ctx") or {}) else "")
        for err in exc.errors()
    ]
    # A path that names no possible resource (an id off its pattern) is not found.
    in_path = any(tuple(err.get("loc", ()))[:1] == ("path",) for err in exc.errors())
    return _error(404 if in_path else 422, "; ".join(reasons) or "the request is invalid")


@app.not_found
def route_not_found(exc: Exception) -> Response:
    return _error(404, f"no route {app.current_event.http_method} {app.current_event.path}")


@telemetry.instrument
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
