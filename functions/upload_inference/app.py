"""S3 drops: a photo (or InkML, or strokes JSON) under `uploads/<owner>/` gets a prediction.

Each record of the event is handled on its own: a duplicate delivery finds its prediction
already written (the id derives from bucket, key and version) and is skipped; an unusable
upload gets an error record, is logged, and never fails the batch. Only a model that cannot
be served raises, so that S3's asynchronous retry (then the DLQ) can try again.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common import service, telemetry, wiring

logger = Logger()
metrics = Metrics()
wiring.on_model_failure(
    lambda version, reason: metrics.add_metric(
        name="ModelLoadFailed", unit=MetricUnit.Count, value=1
    )
)


def handle_event(event: S3Event, services: wiring.Services) -> list[dict]:
    """Process every record; one summary per record: key, outcome, prediction id."""
    summaries = []
    for record in event.records:
        obj = service.UploadedObject(
            bucket=record.s3.bucket.name,
            key=unquote_plus(record.s3.get_object.key),  # events URL-encode keys
            version_id=record.s3.get_object.version_id,
            etag=record.s3.get_object.etag or "",
            size=record.s3.get_object.size or 0,
            event_time=datetime.fromisoformat(record.event_time.replace("Z", "+00:00")),
        )
        outcome, written = service.process_upload(
            obj,
            services.s3,
            services.store,
            services.models.get,
            services.settings.max_upload_bytes,
        )
        status = written["status"] if written else "skipped"
        metrics.add_metric(name=f"Upload{outcome.title()}", unit=MetricUnit.Count, value=1)
        logger.info(
            "upload processed", extra={"key": obj.key, "outcome": outcome, "status": status}
        )
        summaries.append(
            {"key": obj.key, "outcome": outcome, "id": obj.prediction_id(), "status": status}
        )
    return summaries


@telemetry.instrument
@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict:
    return {"processed": handle_event(event, wiring.services())}
