"""The feedback trigger: count, claim one batch at the threshold, start exactly one job;
duplicate and concurrent deliveries, duplicates after a claim, and a failed job's release."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from lambda_testkit import ENV, load_event

from functions.common import retraining, wiring
from functions.common.feedback import HELD, PENDING, USED, FeedbackStore
from functions.common.retraining import FeedbackBatches
from functions.feedback_trigger import app as trigger

THRESHOLD = ENV["RETRAINING_THRESHOLD_PARAMETER"]


class AtomicRequests:
    """An S3 client whose every request is atomic, as S3's are. moto's in-process backend is
    not: it checks conditional PUTs without a lock, and a read racing the deletion of the
    same object can find its buffer closed (ValueError), where S3 answers one or the other.

    The local stack's emulator does the same; the claim relies on nothing else.
    """

    def __init__(self, s3):
        self._s3, self.lock = s3, threading.RLock()

    def __getattr__(self, name):
        attribute = getattr(self._s3, name)
        if not callable(attribute):
            return attribute

        def atomic(*args, **kwargs):
            with self.lock:
                return attribute(*args, **kwargs)

        return atomic


def jobs(aws) -> list[dict]:
    summaries = wiring.services().sagemaker.list_training_jobs()["TrainingJobSummaries"]
    return [
        wiring.services().sagemaker.describe_training_job(TrainingJobName=j["TrainingJobName"])
        for j in summaries
    ]


@pytest.fixture
def threshold(aws):
    aws.ssm.put_parameter(Name=THRESHOLD, Value="3", Type="String")
    return 3


def deliver(lambda_context) -> dict:
    return trigger.lambda_handler(load_event("s3_feedback_pending.json"), lambda_context)


def test_below_the_threshold_nothing_is_claimed(aws, production, threshold, lambda_context):
    aws.add_feedback(2)
    outcome = deliver(lambda_context)
    assert outcome == {"claimed": False, "pending": 2, "threshold": 3}
    assert aws.data_keys("feedback/batches/") == [] and jobs(aws) == []


def test_at_the_threshold_one_batch_and_one_job(aws, production, threshold, lambda_context):
    ids = aws.add_feedback(3)
    outcome = deliver(lambda_context)
    assert outcome["claimed"] and outcome["batch"] == 1 and outcome["size"] == 3
    # the same event delivered again, and once more: nothing new
    assert not deliver(lambda_context)["claimed"]
    assert not deliver(lambda_context)["claimed"]
    started = jobs(aws)
    assert [j["TrainingJobName"] for j in started] == [outcome["job"]]
    prefix = "feedback/batches/00000001/"
    manifest = json.loads(
        aws.s3.get_object(Bucket=aws.data_bucket, Key=f"{prefix}manifest.json")["Body"].read()
    )
    assert sorted(e["id"] for e in manifest["items"]) == ids
    assert all(e["version_id"] for e in manifest["items"])  # object versions, for lineage
    assert aws.data_keys(PENDING) == []
    assert aws.data_keys(f"{prefix}items/") == [f"{prefix}items/{i}.json" for i in ids]
    assert aws.data_keys(f"{prefix}inputs/") == [f"{prefix}inputs/{i}.json" for i in ids]
    assert aws.data_keys(USED) == [f"{USED}{i}.json" for i in ids]
    status = FeedbackBatches(aws.s3, aws.data_bucket).status(1)
    assert status["state"] == "training" and status["job"] == outcome["job"]
    assert status["base_version"] == production


def test_the_training_job_request_has_the_aws_shape(aws, production, threshold, lambda_context):
    aws.add_feedback(3)
    job = jobs(aws) if deliver(lambda_context)["claimed"] else []
    (job,) = job
    assert job["TrainingJobName"].startswith("inktex-dev-batch-000001-")
    assert job["AlgorithmSpecification"]["TrainingImage"] == ENV["TRAINING_IMAGE"]
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert job["RoleArn"] == ENV["TRAINING_ROLE_ARN"]
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{aws.model_bucket}/training/"
    hp = job["HyperParameters"]
    assert json.loads(hp["sagemaker_program"]) == "model_export/finetune_job.py"
    assert json.loads(hp["sagemaker_submit_directory"]) == ENV["TRAINING_SOURCE_URI"]
    assert hp["base-version"] == production and hp["batch"] == "1"
    assert hp["model-bucket"] == aws.model_bucket and hp["job-name"] == job["TrainingJobName"]
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]
    }
    assert channels == {
        "feedback": f"s3://{aws.data_bucket}/feedback/batches/00000001/",
        "replay": f"s3://{aws.data_bucket}/datasets/replay/",
        "base": f"s3://{aws.model_bucket}/checkpoints/{production}/",
    }
    # botocore's own model of the API accepts the request (names, types, required fields)
    request = retraining.training_job_request(
        wiring.services().settings, {"batch": 1, "digest": "ab" * 32}, production
    )
    sm = wiring.services().sagemaker
    sm.meta.events.register("before-send.sagemaker.CreateTrainingJob", lambda **kw: None)
    sm._serializer.serialize_to_request(
        request, sm.meta.service_model.operation_model("CreateTrainingJob")
    )


def test_a_correction_sent_again_after_its_claim_is_not_used_twice(
    aws, production, threshold, lambda_context
):
    ids = aws.add_feedback(3)
    assert deliver(lambda_context)["claimed"]
    # a duplicate of an already claimed correction reappears under pending/ (a race with
    # POST /feedback), plus two new ones: the duplicate is dropped, the rest wait
    store = FeedbackStore(aws.s3, aws.data_bucket)
    store.put_new({"id": ids[0], "input_key": "inputs/x.json", "held": False, "returned_from": []})
    aws.add_feedback(2, start=10)
    outcome = deliver(lambda_context)
    assert not outcome["claimed"] and outcome["pending"] == 2
    assert f"{PENDING}{ids[0]}.json" not in aws.data_keys(PENDING)


@pytest.mark.parametrize("round_", range(25))
def test_concurrent_claims_make_one_batch_and_lose_nothing(aws, threshold, round_):
    """Many claimers at once (duplicate and concurrent S3 deliveries): one winner per batch,
    every correction in exactly one batch or still pending; repeated 25 times."""
    s3 = AtomicRequests(aws.s3)
    ids = aws.add_feedback(7)
    batches = FeedbackBatches(s3, aws.data_bucket)
    barrier = threading.Barrier(8)

    def claim(_):
        barrier.wait()
        return batches.claim(3)

    with ThreadPoolExecutor(8) as pool:
        won = [m for m in pool.map(claim, range(8)) if m is not None]
    assert len(won) == 1
    claimed = [e["id"] for e in won[0]["items"]]
    assert len(claimed) == len(set(claimed))
    pending = [k[len(PENDING) : -5] for k in aws.data_keys(PENDING)]
    assert sorted(claimed + pending) == ids  # nothing lost, nothing twice


def test_concurrent_claims_over_successive_batches(aws, threshold):
    """Claims racing while new feedback arrives: each correction lands in one batch."""
    s3 = AtomicRequests(aws.s3)
    batches = FeedbackBatches(s3, aws.data_bucket)
    ids = []

    def worker(i):
        if i % 2 == 0:
            with s3.lock:  # a correction's objects arrive as one request's would
                ids.extend(aws.add_feedback(2, start=100 + i))
        return batches.claim(3)

    with ThreadPoolExecutor(6) as pool:
        won = [m for m in pool.map(worker, range(24)) if m is not None]
    while (m := batches.claim(1)) is not None:  # sweep what is left
        won.append(m)
    claimed = [e["id"] for m in won for e in m["items"]]
    assert sorted(claimed) == sorted(ids) and len(claimed) == len(set(claimed))
    assert sorted(m["batch"] for m in won) == list(range(1, len(won) + 1))


def test_a_released_batch_returns_to_pending_then_is_held(
    aws, production, threshold, lambda_context
):
    ids = aws.add_feedback(3)
    assert deliver(lambda_context)["claimed"]
    batches = FeedbackBatches(aws.s3, aws.data_bucket)
    released = batches.release(1, "AlgorithmError", max_attempts=2)
    assert released == {"batch": 1, "returned": 3, "held": 0, "already": False}
    assert batches.release(1, "again", max_attempts=2)["already"]  # a duplicate event
    assert aws.data_keys(PENDING) == [f"{PENDING}{i}.json" for i in ids]
    # the returned corrections are not mistaken for duplicates: they form batch 2
    outcome = deliver(lambda_context)
    assert outcome["claimed"] and outcome["batch"] == 2 and outcome["size"] == 3
    assert batches.release(2, "AlgorithmError", max_attempts=2)["held"] == 3
    assert aws.data_keys(PENDING) == [] and aws.data_keys(HELD) == [f"{HELD}{i}.json" for i in ids]
    item = json.loads(
        aws.s3.get_object(Bucket=aws.data_bucket, Key=f"{HELD}{ids[0]}.json")["Body"].read()
    )
    assert item["attempts"] == 2 and item["returned_from"] == [1, 2]


def test_a_job_that_cannot_start_releases_its_batch(
    aws, production, threshold, lambda_context, monkeypatch
):
    from botocore.exceptions import ClientError

    aws.add_feedback(3)
    sm = wiring.services().sagemaker

    def refuse(**kwargs):
        raise ClientError(
            {"Error": {"Code": "ResourceLimitExceeded", "Message": "no GPUs"}}, "CreateTrainingJob"
        )

    monkeypatch.setattr(sm, "create_training_job", refuse)
    with pytest.raises(ClientError):
        deliver(lambda_context)
    assert len(aws.data_keys(PENDING)) == 3
    assert FeedbackBatches(aws.s3, aws.data_bucket).status(1)["state"] == "released"


# --- distinct predictions and the per-user cap per day (issue 19) ---------------------------


def test_countable_takes_at_most_the_cap_per_user_and_day():
    def vote(tag: str, day: str, n: int) -> dict:
        return {"id": f"{tag}{n:020x}", "owner_tag": tag, "day": day, "modified": f"{day}T{n:02d}"}

    a, b = "a" * 12, "b" * 12
    entries = [vote(a, "2026-01-01", n) for n in range(5)] + [vote(a, "2026-01-02", 9)]
    entries += [vote(b, "2026-01-01", 7)]
    counted = retraining.countable(entries, daily_cap=2)
    assert sorted((e["owner_tag"], e["day"]) for e in counted) == [
        (a, "2026-01-01"),
        (a, "2026-01-01"),
        (a, "2026-01-02"),
        (b, "2026-01-01"),
    ]
    # the oldest of a day count first; the rest wait for a later batch
    assert {e["modified"] for e in counted if e["day"] == "2026-01-01" and e["owner_tag"] == a} == {
        "2026-01-01T00",
        "2026-01-01T01",
    }


def test_the_trigger_applies_the_daily_cap_from_the_template(
    aws, production, threshold, lambda_context, monkeypatch
):
    """One user's many votes count as FEEDBACK_DAILY_CAP a day; another user's count too."""
    monkeypatch.setenv("FEEDBACK_DAILY_CAP", "2")
    wiring.services.cache_clear()
    aws.add_feedback(5)  # all of user-1 (the ids share the first 12 digits: one owner tag)
    outcome = deliver(lambda_context)
    assert outcome == {"claimed": False, "pending": 2, "threshold": 3}
    aws.add_feedback(1, start=int("f" * 12, 16) << 80)  # someone else
    outcome = deliver(lambda_context)
    assert outcome["claimed"] and outcome["size"] == 3
    assert len(aws.data_keys(PENDING)) == 3  # user-1's votes over the cap wait
