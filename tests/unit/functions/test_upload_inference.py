"""The S3 drop function with the sample S3 event: records, owners, duplicates, bad uploads."""

from __future__ import annotations

import json

import pytest
from lambda_testkit import TINY_MODEL, load_event

from functions.common.models import ModelUnavailable
from functions.upload_inference import app as drop

PNG = (TINY_MODEL.parent / "inkml" / "RIT_2014_19.png").read_bytes()


def records(aws) -> list[dict]:
    listed = aws.s3.list_objects_v2(Bucket=aws.data_bucket, Prefix="predictions/")
    return [
        json.loads(aws.s3.get_object(Bucket=aws.data_bucket, Key=o["Key"])["Body"].read())
        for o in listed.get("Contents", [])
    ]


def test_the_sample_event_shape(aws, production, lambda_context):
    event = load_event("s3_upload.json")
    key = "uploads/user-1/photo one.png"  # the sample's key, URL-decoded
    assert event["Records"][0]["s3"]["object"]["key"] == "uploads/user-1/photo%20one.png"
    event = aws.put_upload(key, PNG) | {}
    result = drop.lambda_handler(event, lambda_context)
    assert [r["outcome"] for r in result["processed"]] == ["created"]
    (record,) = records(aws)
    assert record["owner"] == "user-1" and record["source_key"] == key
    assert record["status"] == "ok" and record["model_version"] == production
    assert {"latex", "tokens", "confidence", "alternatives", "latency_ms", "created_at"} <= set(
        record
    )


def test_a_duplicate_event_makes_no_second_prediction(aws, production, lambda_context):
    event = aws.put_upload("uploads/user-1/a.png", PNG)
    first = drop.lambda_handler(event, lambda_context)["processed"]
    again = drop.lambda_handler(event, lambda_context)["processed"]
    assert first[0]["outcome"] == "created" and again[0]["outcome"] == "duplicate"
    assert first[0]["id"] == again[0]["id"] and len(records(aws)) == 1
    # the same key uploaded again is a new object version: a new prediction
    drop.lambda_handler(aws.put_upload("uploads/user-1/a.png", PNG), lambda_context)
    assert len(records(aws)) == 2


def test_a_bad_upload_gets_an_error_record_and_the_batch_goes_on(aws, production, lambda_context):
    bad = aws.put_upload("uploads/user-1/broken.png", b"not an image at all")
    good = aws.put_upload("uploads/user-1/good.png", PNG)
    event = {"Records": bad["Records"] + good["Records"]}
    result = drop.lambda_handler(event, lambda_context)["processed"]
    assert [r["status"] for r in result] == ["error", "ok"]
    errors = [r for r in records(aws) if r["status"] == "error"]
    assert len(errors) == 1 and errors[0]["source_key"] == "uploads/user-1/broken.png"
    assert "image" in errors[0]["error"]
    # redelivery does not retry it
    again = drop.lambda_handler(bad, lambda_context)["processed"]
    assert again[0]["outcome"] == "duplicate"


def test_a_vanished_or_oversized_upload_is_an_error_record(
    aws, production, lambda_context, monkeypatch
):
    event = aws.put_upload("uploads/user-1/gone.png", PNG)
    aws.s3.delete_object(
        Bucket=aws.data_bucket,
        Key="uploads/user-1/gone.png",
        VersionId=event["Records"][0]["s3"]["object"]["versionId"],
    )
    assert drop.lambda_handler(event, lambda_context)["processed"][0]["status"] == "error"
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "10")
    drop.wiring.services.cache_clear()
    event = aws.put_upload("uploads/user-1/big.png", PNG)
    assert drop.lambda_handler(event, lambda_context)["processed"][0]["status"] == "error"
    assert any("limit" in r.get("error", "") for r in records(aws))


def test_inkml_drops_and_ownerless_drops(aws, production, lambda_context):
    inkml = (TINY_MODEL.parent / "inkml" / "RIT_2014_19.inkml").read_bytes()
    drop.lambda_handler(aws.put_upload("uploads/user-1/ink.inkml", inkml), lambda_context)
    drop.lambda_handler(aws.put_upload("uploads/x.png", PNG), lambda_context)
    by_key = {r["source_key"]: r for r in records(aws)}
    assert by_key["uploads/user-1/ink.inkml"]["input_kind"] == "inkml"
    assert by_key["uploads/x.png"]["owner"] is None
    listed = aws.s3.list_objects_v2(Bucket=aws.data_bucket, Prefix="predictions/_anonymous/")
    assert listed["KeyCount"] == 1


def test_no_model_raises_so_that_s3_retries(aws, lambda_context):
    event = aws.put_upload("uploads/user-1/a.png", PNG)
    with pytest.raises(ModelUnavailable):
        drop.lambda_handler(event, lambda_context)
    assert records(aws) == []
