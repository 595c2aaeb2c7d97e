"""The training-events function: the evaluation gate on Completed, the release on Failed,
each job decided once; with the sample EventBridge events of events/."""

from __future__ import annotations

import pytest
from lambda_testkit import FIXTURES_INKML, call_api, load_event

from functions.common import promotion, wiring
from functions.common.feedback import PENDING
from functions.common.retraining import FeedbackBatches
from functions.training_events import app


@pytest.fixture
def claimed(aws, production):
    """Batch 1 claimed (as the trigger would) from 5 corrections: 1 of them held out."""
    aws.ssm.put_parameter(
        Name="/inktex/dev/settings/retraining-threshold", Value="5", Type="String"
    )
    aws.add_feedback(5)
    return FeedbackBatches(aws.s3, aws.data_bucket).claim(5)


def seed_eval_set(aws) -> None:
    """The committed fixture set (CROHME 2014 test images) as the evaluation set."""
    rows = []
    for line in (FIXTURES_INKML / "labels.tsv").read_text().splitlines():
        name = line.split("\t")[0]
        if (FIXTURES_INKML / f"{name}.png").is_file():
            aws.s3.upload_file(
                str(FIXTURES_INKML / f"{name}.png"),
                aws.data_bucket,
                f"datasets/eval/images/{name}.png",
            )
            rows.append(line)
    aws.s3.put_object(
        Bucket=aws.data_bucket, Key="datasets/eval/labels.tsv", Body="\n".join(rows).encode()
    )


def test_a_better_candidate_is_promoted_once(aws, production, claimed, lambda_context, fake_scores):
    version = aws.add_candidate()
    fake_scores(cand=0.5, prod=0.25)
    out = app.lambda_handler(load_event("training_job_completed.json"), lambda_context)
    decision = out["decision"]
    assert decision["decision"] == "promoted" and decision["batch"] == 1
    assert decision["candidate"]["version"] == version
    assert decision["production"]["version"] == production
    moved = aws.registry.alias("production")
    assert moved.version == version and moved.previous == production
    assert "0.5000" in moved.reason and "0.2500" in moved.reason  # both scores in the history
    assert aws.registry.alias("candidate").version == version
    # the same event again: decided already, nothing moves
    again = app.lambda_handler(load_event("training_job_completed.json"), lambda_context)
    assert again["decision"]["duplicate"]
    assert len(aws.registry.history("production")) == 3  # created, setup promote, this one
    assert FeedbackBatches(aws.s3, aws.data_bucket).status(1)["state"] == "completed"


@pytest.mark.parametrize(
    ("cand", "prod", "held", "why"),
    [
        (0.25, 0.25, (1.0, 1.0), "not better"),
        (0.2, 0.25, (1.0, 1.0), "not better"),
        (0.5, 0.25, (0.0, 1.0), "held-out"),
    ],
)
def test_a_candidate_that_is_not_better_stays_a_candidate(
    aws, production, claimed, lambda_context, fake_scores, cand, prod, held, why
):
    version = aws.add_candidate()
    fake_scores(cand, prod, held)
    decision = app.lambda_handler(load_event("training_job_completed.json"), lambda_context)[
        "decision"
    ]
    assert decision["decision"] == "rejected" and why in decision["reason"]
    assert aws.registry.alias("production").version == production
    assert aws.registry.alias("candidate").version == version


def test_decisions_are_visible_through_the_api(
    aws, production, claimed, lambda_context, fake_scores
):
    aws.add_candidate()
    fake_scores(cand=0.1, prod=0.25)
    app.lambda_handler(load_event("training_job_completed.json"), lambda_context)
    status, body = call_api(load_event("api_get_retraining.json"), lambda_context)
    assert status == 200 and body["decisions"][0]["decision"] == "rejected"
    assert body["latest_batch"]["state"] == "completed" and body["running_job"] is None
    status, models = call_api(load_event("api_get_models.json"), lambda_context)
    assert models["latest_decision"]["decision"] == "rejected"
    assert models["latest_decision"]["candidate"]["eval"] == {"exprate": 0.1}


def test_a_failed_job_returns_its_feedback_to_pending_once(
    aws, production, claimed, lambda_context
):
    ids = sorted(e["id"] for e in claimed["items"])
    assert aws.data_keys(PENDING) == []
    out = app.lambda_handler(load_event("training_job_failed.json"), lambda_context)
    assert out["decision"]["decision"] == "failed"
    assert "nothing to train on" in out["decision"]["reason"]
    assert aws.data_keys(PENDING) == [f"{PENDING}{i}.json" for i in ids]  # nothing lost
    dup = app.lambda_handler(load_event("training_job_failed.json"), lambda_context)
    assert dup["decision"]["duplicate"]
    assert FeedbackBatches(aws.s3, aws.data_bucket).status(1)["state"] == "released"
    assert aws.registry.alias("production").version == production


def test_the_original_sample_event_is_ignored_as_no_batch(aws, lambda_context):
    facts = app.lambda_handler(load_event("training_job_state_change.json"), lambda_context)
    assert facts["job"] == "inktex-dev-0001" and facts["status"] == "Completed"
    assert facts["model_artifacts"].startswith("s3://inktex-models-dev-")
    assert facts["decision"]["decision"] == "ignored"


def test_evaluation_uses_the_serving_runtime_on_both_sets(aws, production, claimed):
    """Real scoring (no fakes): the tiny package on the fixture set and the held-out slice."""
    seed_eval_set(aws)
    settings = wiring.services().settings
    sets = {
        "eval": promotion.load_eval_set(aws.s3, aws.data_bucket),
        "heldout": promotion.load_heldout(aws.s3, aws.data_bucket, claimed),
    }
    assert len(sets["eval"]) == 5 and len(sets["heldout"]) == 1
    scores = promotion.evaluate_versions(
        aws.registry, {"candidate": production, "production": production}, sets
    )
    assert scores["candidate"] == scores["production"]
    assert scores["candidate"]["eval"]["count"] == 5
    assert 0.0 <= scores["candidate"]["eval"][settings.promotion_metric] <= 1.0
    promote, reason = promotion.decide(scores["candidate"], scores["production"], "exprate", 0.0)
    assert not promote and "not better" in reason  # equal is not better
