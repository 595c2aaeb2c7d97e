"""SageMaker "Training Job State Change" events, as EventBridge delivers them.

On Completed the candidate is scored against production with the serving runtime and the
production alias moves only if the candidate is better (`functions.common.promotion`); on
Failed or Stopped the job's feedback batch returns to pending, so nothing is lost. Each job
is decided once, however often its event arrives. The local stack's training runner sends
the same event shape when a local job ends.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common import promotion, telemetry, wiring

logger = Logger()
metrics = Metrics()


def describe(event: EventBridgeEvent) -> dict:
    """The facts of a training job state change that the promotion step needs."""
    detail = event.detail
    return {
        "job": detail.get("TrainingJobName"),
        "status": detail.get("TrainingJobStatus"),
        "secondary_status": detail.get("SecondaryStatus"),
        "failure_reason": detail.get("FailureReason"),
        "model_artifacts": (detail.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        "time": event.time,
    }


def handle_event(event: EventBridgeEvent, services: wiring.Services) -> dict:
    facts = describe(event)
    metrics.add_dimension(name="status", value=str(facts["status"]))
    metrics.add_metric(name="TrainingJobStateChange", unit=MetricUnit.Count, value=1)
    decision = promotion.on_training_job_state_change(
        facts, services.settings, services.s3, services.registry
    )
    if not decision.get("duplicate") and decision["decision"] in ("promoted", "rejected"):
        metrics.add_metric(
            name=f"Promotion{decision['decision'].title()}", unit=MetricUnit.Count, value=1
        )
    logger.info("training job state change", extra={**facts, "decision": decision["decision"]})
    return {**facts, "decision": decision}


@telemetry.instrument
@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict:
    return handle_event(event, wiring.services())
