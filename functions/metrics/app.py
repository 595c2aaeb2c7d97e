"""`GET /metrics` (Prometheus, bearer token) and `GET /stats` (signed in): the durable metrics.

Each request first folds a bounded batch of new deltas into the state
(`functions.common.metrics_store`), so the numbers are current within one scrape and a
scrape's cost does not grow with history. `/metrics` is guarded by a bearer token that
Prometheus sends (`authorization.credentials_file` in infra/prometheus/prometheus.yml); the
token is a Secrets Manager secret (template.yaml, `MetricsTokenSecret`), read through
Powertools Parameters with a cache. `/stats` serves the same state's hourly sums as JSON for
the web UI's charts; the JWT authorizer guards it. This function records no delta of its
own: a scrape every 15 seconds would otherwise be most of the traffic it reports.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
from typing import Annotated

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.typing import LambdaContext
from prometheus_client import CONTENT_TYPE_LATEST

from functions.common.aliases import AliasReader
from functions.common.config import Settings
from functions.common.metrics_store import MetricsStore, hourly
from functions.metrics.exposition import exposition

logger = Logger()
metrics = Metrics()
app = APIGatewayHttpResolver(enable_validation=True)

TOKEN_MAX_AGE_S = 300  # a rotated token applies within this
# Where an operator finds the token, added to the 401's reason when set: the local stack says
# `inktex info`; in AWS it is the secret's value, which the reason does not name.
TOKEN_HINT = os.environ.get("METRICS_TOKEN_HINT", "")


class Context:
    """Clients and settings, built once per container."""

    def __init__(self, settings: Settings, s3, ssm, secrets):
        self.settings = settings
        self.store = MetricsStore(s3, settings.data_bucket, settings.metrics_compaction_batch)
        self.production_version = AliasReader(ssm, settings.alias_prefix, settings.alias_max_age_s)
        self.secrets = SecretsProvider(boto3_client=secrets)

    def token(self) -> str:
        name = self.settings.metrics_token_secret
        return str(self.secrets.get(name, max_age=TOKEN_MAX_AGE_S)).strip() if name else ""


@functools.cache
def clients() -> Context:
    return Context(
        Settings.from_env(),
        boto3.client("s3"),
        boto3.client("ssm"),
        boto3.client("secretsmanager"),
    )


def _json(status: int, payload: dict, headers: dict | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(payload),
        headers=headers,
    )


def authorized(header: str | None, token: str) -> bool:
    """A constant-time check of `Authorization: Bearer <token>`; no token configured: no."""
    if not token or not header or not header.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


@app.get("/metrics", summary="The durable metrics, in Prometheus's text format (bearer token)")
def scrape():
    ctx = clients()
    if not authorized(app.current_event.headers.get("authorization"), ctx.token()):
        metrics.add_metric(name="MetricsUnauthorized", unit=MetricUnit.Count, value=1)
        reason = "send the metrics token: Authorization: Bearer <token>"
        return _json(
            401,
            {"message": f"{reason} ({TOKEN_HINT})" if TOKEN_HINT else reason},
            {"WWW-Authenticate": 'Bearer realm="inktex-metrics"'},
        )
    state = ctx.store.compact()
    body = exposition(state, ctx.production_version(), ctx.store.backlog_hint(state))
    metrics.add_metric(name="MetricsScrapes", unit=MetricUnit.Count, value=1)
    return Response(status_code=200, content_type=CONTENT_TYPE_LATEST, body=body.decode())


@app.get("/stats", summary="Hourly sums of the metrics, for the web UI's charts (signed in)")
def stats(hours: Annotated[int, Query(ge=1, le=336)] = 48):
    claims = app.current_event.request_context.authorizer.jwt_claim or {}
    if not claims.get("sub"):
        return _json(401, {"message": "sign in first: this route needs a bearer token"})
    ctx = clients()
    state = ctx.store.compact()
    return _json(
        200,
        {
            "hours": hourly(state, hours),
            "production_version": ctx.production_version() or None,
            "updated_at": state.get("updated_at"),
        },
    )


@app.exception_handler(RequestValidationError)
def validation_error(exc: RequestValidationError) -> Response:
    """Errors are `{"message": reason}`, as the API's are (not Powertools' statusCode/detail)."""
    reasons = [
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    ]
    return _json(422, {"message": "; ".join(reasons) or "the request is invalid"})


@app.not_found
def route_not_found(exc: Exception) -> Response:
    event = app.current_event
    return _json(404, {"message": f"no route {event.http_method} {event.path}"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
