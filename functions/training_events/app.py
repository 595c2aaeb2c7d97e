"""SageMaker "Training Job State Change" events, as EventBridge delivers them.

A placeholder for now: it records each event (structured log + metric) so that the rule,
its permissions and the event shape are wired and tested. The feedback-loop issue (8)
completes it: on Completed it scores candidate against production and moves the alias; on
Failed it returns the feedback batch to pending.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
metrics = Metrics()


def describe(event: EventBridgeEvent) -> dict:
    """The facts of a training job state change that the promotion step will need."""
    detail = event.detail
    return {
        "job": detail.get("TrainingJobName"),
        "status": detail.get("TrainingJobStatus"),
        "secondary_status": detail.get("SecondaryStatus"),
        "failure_reason": detail.get("FailureReason"),
        "model_artifacts": (detail.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        "time": event.time,
    }


@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict:
    facts = describe(event)
    metrics.add_dimension(name="status", value=str(facts["status"]))
    metrics.add_metric(name="TrainingJobStateChange", unit=MetricUnit.Count, value=1)
    logger.info("training job state change", extra=facts)
    return facts
