"""Fault tests for the feedback loop's far end (issue 11), faults injected through botocore
`before-call` hooks on the clients the functions build, never through a fake storage class:

- a training process that crashes (a non-zero exit): the runner's Failed event releases the
  batch and no correction is lost;
- the promotion dying between scoring and the production alias swap: the re-delivered event
  finishes the stored decision exactly once (alias where the scores say, one record, one
  history entry), and a further delivery is a duplicate.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import EndpointConnectionError
from lambda_testkit import JOB, load_event

from functions.common import promotion, wiring
from functions.common.feedback import PENDING
from functions.common.retraining import FeedbackBatches
from functions.training_events import app
from local_stack.local_runner import run_job


@pytest.fixture
def batch(aws, production) -> dict:
    """Batch 1 claimed from 5 corrections, as the feedback trigger would."""
    aws.add_feedback(5)
    return FeedbackBatches(aws.s3, aws.data_bucket).claim(5)


def crashing_program(tmp_path) -> str:
    script = tmp_path / "crash"
    script.write_text("#!/bin/sh\necho 'Traceback: CUDA out of memory' >&2\nexit 3\n")
    script.chmod(0o755)
    return str(script)


def test_a_crashed_training_process_releases_its_batch(aws, batch, lambda_context, tmp_path):
    ids = sorted(e["id"] for e in batch["items"])
    assert aws.data_keys(PENDING) == []  # all five claimed
    description = {
        "TrainingJobName": JOB,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}",
        "HyperParameters": {"batch": "1"},
        "InputDataConfig": [],
        "OutputDataConfig": {"S3OutputPath": f"s3://{aws.model_bucket}/training/"},
    }
    event = run_job(description, None, tmp_path / "work", python=crashing_program(tmp_path))
    assert event["detail"]["TrainingJobStatus"] == "Failed"
    assert "exit code 3" in event["detail"]["FailureReason"]
    assert "out of memory" in event["detail"]["FailureReason"]  # the log's tail travels

    decision = app.lambda_handler(event, lambda_context)["decision"]
    assert decision["decision"] == "failed" and "exit code 3" in decision["reason"]
    assert decision["released"]["returned"] == 5
    assert aws.data_keys(PENDING) == [f"{PENDING}{i}.json" for i in ids]  # nothing lost
    assert FeedbackBatches(aws.s3, aws.data_bucket).status(1)["state"] == "released"
    assert app.lambda_handler(event, lambda_context)["decision"]["duplicate"]
    assert aws.data_keys(PENDING) == [f"{PENDING}{i}.json" for i in ids]  # returned once


def fail_first_production_swap(client) -> list[str]:
    """A `before-call` hook on an SSM client: the first PutParameter on the production alias
    fails as if the network (or the function's container) went away; later ones go through."""
    seen: list[str] = []

    def hook(params, **_):
        name = json.loads(params.get("body") or b"{}").get("Name", "")  # SSM speaks JSON
        seen.append(name)
        if name.endswith("/production") and seen.count(name) == 1:
            raise EndpointConnectionError(endpoint_url="https://ssm.us-east-1.amazonaws.com")

    client.meta.events.register("before-call.ssm.PutParameter", hook)
    return seen


def decision_records(aws) -> list[str]:
    page = aws.s3.list_objects_v2(Bucket=aws.model_bucket, Prefix=promotion.DECISIONS)
    return [o["Key"] for o in page.get("Contents", [])]


def test_a_promotion_interrupted_before_the_swap_completes_once_on_redelivery(
    aws, production, batch, lambda_context, monkeypatch, fake_scores
):
    version = aws.add_candidate()
    fake_scores(cand=0.5, prod=0.25)
    seen = fail_first_production_swap(wiring.services().ssm)
    event = load_event("training_job_completed.json")

    with pytest.raises(EndpointConnectionError):
        app.lambda_handler(event, lambda_context)
    # scored and claimed, the candidate alias moved, production did not: the half-done state
    assert aws.registry.alias("production").version == production
    assert aws.registry.alias("candidate").version == version
    claimed = json.loads(
        aws.s3.get_object(Bucket=aws.model_bucket, Key=f"training/{JOB}/decision.json")[
            "Body"
        ].read()
    )
    assert claimed["state"] == "claimed" and claimed["decision"] == "promoted"
    assert decision_records(aws) == []

    def no_rescoring(*_):
        raise AssertionError("a resumed decision is not scored again")

    monkeypatch.setattr(promotion, "evaluate_versions", no_rescoring)
    resumed = app.lambda_handler(load_event("training_job_completed.json"), lambda_context)
    decision = resumed["decision"]
    assert decision["resumed"] and decision["decision"] == "promoted"
    assert decision["candidate"]["eval"] == {"exprate": 0.5}  # the stored scores
    moved = aws.registry.alias("production")
    assert moved.version == version and moved.previous == production
    assert "0.5000" in moved.reason and "0.2500" in moved.reason
    assert [a.version for a in aws.registry.history("candidate")].count(version) == 1
    assert len(decision_records(aws)) == 1
    assert FeedbackBatches(aws.s3, aws.data_bucket).status(1)["state"] == "completed"
    assert seen.count(f"{aws.registry.parameter_name('production')}") == 2  # failed, then ok

    again = app.lambda_handler(load_event("training_job_completed.json"), lambda_context)
    assert again["decision"]["duplicate"] and not again["decision"].get("resumed")
    assert len(aws.registry.history("production")) == 3  # created, setup, this promotion
    assert len(decision_records(aws)) == 1
    state = json.loads(
        aws.s3.get_object(Bucket=aws.model_bucket, Key=f"training/{JOB}/decision.json")[
            "Body"
        ].read()
    )["state"]
    assert state == "done"
