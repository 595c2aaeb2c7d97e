"""S3 ObjectCreated under `feedback/pending/`: count, claim a batch at the threshold, train.

Every delivery (duplicates and concurrent ones included) runs the same idempotent claim
(`functions.common.retraining`): at most one of them wins a batch and starts its one
training job; the others return without effect. Where the job runs is configuration: the
SageMaker API at the endpoint boto3 is given (AWS, or the local stack's emulator, whose
runner executes the same entry point as a process).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common import retraining, telemetry, wiring

logger = Logger()
metrics = Metrics()


def handle_event(event: S3Event, services: wiring.Services) -> dict:
    """One claim attempt per delivery: the records only say that something arrived."""
    keys = [record.s3.get_object.key for record in event.records]
    outcome = retraining.on_feedback_created(
        services.settings,
        services.s3,
        services.ssm,
        services.sagemaker,
        base_version=services.production_version(),
    )
    if outcome["claimed"]:
        metrics.add_metric(name="TrainingJobsStarted", unit=MetricUnit.Count, value=1)
    logger.info("feedback arrived", extra={"keys": keys, **outcome})
    return outcome


@telemetry.instrument
@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict:
    return handle_event(event, wiring.services())
