"""The training-events placeholder with the sample EventBridge event."""

from lambda_testkit import load_event

from functions.training_events import app


def test_records_a_training_job_state_change(lambda_context):
    facts = app.lambda_handler(load_event("training_job_state_change.json"), lambda_context)
    assert facts["job"] == "inktex-dev-0001" and facts["status"] == "Completed"
    assert facts["model_artifacts"].startswith("s3://inktex-models-dev-")
