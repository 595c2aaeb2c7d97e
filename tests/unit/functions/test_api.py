"""The HTTP API through its handler, with the sample events of events/ against moto."""

from __future__ import annotations

import base64
import json

import pytest
from lambda_testkit import TINY_MODEL, as_user, at_prediction, load_event

from functions.api import app as api


def call(event: dict, lambda_context) -> tuple[int, dict | bytes | None, dict]:
    response = api.lambda_handler(event, lambda_context)
    body = response.get("body")
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body)
    elif body:
        body = json.loads(body)
    return response["statusCode"], body, response.get("headers", {})


def with_body(event: dict, body: bytes, content_type: str) -> dict:
    event["body"] = base64.b64encode(body).decode()
    event["isBase64Encoded"] = True
    event["headers"]["content-type"] = content_type
    return event


def predict(lambda_context, sub="user-1", event=None) -> dict:
    status, body, _ = call(
        as_user(event or load_event("api_create_prediction.json"), sub), lambda_context
    )
    assert status == 201, body
    return body


def test_recognize_is_anonymous_and_in_no_history(aws, production, lambda_context):
    status, body, _ = call(load_event("api_recognize.json"), lambda_context)
    assert status == 200, body
    assert body["model_version"] == production and body["latex"] and "owner" not in body
    listed = aws.s3.list_objects_v2(Bucket=aws.data_bucket)["Contents"]
    keys = [o["Key"] for o in listed if not o["Key"].startswith("metrics/")]  # counts, no data
    assert sorted(keys) == sorted(
        [f"inputs/_anonymous/{body['id']}.json", f"predictions/_anonymous/{body['id']}.json"]
    )
    _, history, _ = call(load_event("api_list_predictions.json"), lambda_context)
    assert history["items"] == []


def test_create_prediction_records_it_in_the_callers_history(aws, production, lambda_context):
    created = predict(lambda_context)
    assert created["input_kind"] == "image" and created["input_content_type"] == "image/png"
    assert created["input_key"] == f"inputs/user-1/{created['id']}.png"
    status, got, _ = call(
        at_prediction(load_event("api_get_prediction.json"), created["id"]), lambda_context
    )
    assert status == 200 and got == created
    # another user cannot read it
    status, body, _ = call(
        as_user(at_prediction(load_event("api_get_prediction.json"), created["id"]), "user-2"),
        lambda_context,
    )
    assert status == 404 and "message" in body


@pytest.mark.parametrize(
    ("payload", "content_type", "kind"),
    [
        (
            json.dumps({"strokes": [[[0, 0], [5, 9]], [[9, 0], [0, 9]]]}).encode(),
            "application/json",
            "strokes",
        ),
        (
            json.dumps(
                {"inkml": (TINY_MODEL.parent / "inkml" / "RIT_2014_19.inkml").read_text()}
            ).encode(),
            "application/json",
            "inkml",
        ),
        (
            json.dumps(
                {
                    "image": base64.b64encode(
                        (TINY_MODEL.parent / "inkml" / "RIT_2014_19.png").read_bytes()
                    ).decode()
                }
            ).encode(),
            "application/json",
            "image",
        ),
        (
            (TINY_MODEL.parent / "inkml" / "RIT_2014_19.inkml").read_bytes(),
            "application/inkml+xml",
            "inkml",
        ),
    ],
)
def test_every_input_form_is_accepted(aws, production, lambda_context, payload, content_type, kind):
    event = with_body(load_event("api_create_prediction.json"), payload, content_type)
    assert predict(lambda_context, event=event)["input_kind"] == kind


def test_multipart_file_upload(aws, production, lambda_context):
    png = (TINY_MODEL.parent / "inkml" / "RIT_2014_19.png").read_bytes()
    boundary = "inktexboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    event = with_body(
        load_event("api_recognize.json"), body, f"multipart/form-data; boundary={boundary}"
    )
    status, result, _ = call(event, lambda_context)
    assert status == 200 and result["input_content_type"] == "image/png"


@pytest.mark.parametrize(
    ("payload", "content_type", "status", "words"),
    [
        (b"not an image", "image/png", 400, "image"),
        (b"", "image/png", 400, "no body"),
        (b"{not json", "application/json", 400, "JSON"),
        (json.dumps({"strokes": "nope"}).encode(), "application/json", 400, "stroke"),
        (json.dumps({"strokes": [], "image": ""}).encode(), "application/json", 400, "exactly one"),
    ],
)
def test_bad_input_is_a_4xx_with_a_reason(
    aws, production, lambda_context, payload, content_type, status, words
):
    event = with_body(load_event("api_recognize.json"), payload, content_type)
    got, body, _ = call(event, lambda_context)
    assert got == status and words.lower() in body["message"].lower()
    listed = aws.s3.list_objects_v2(Bucket=aws.data_bucket).get("Contents", [])
    assert [o for o in listed if not o["Key"].startswith("metrics/")] == []  # nothing stored


def test_history_lists_newest_first_and_pages(aws, production, lambda_context):
    made = [predict(lambda_context)["id"] for _ in range(3)]
    predict(lambda_context, sub="user-2")
    event = load_event("api_list_predictions.json")
    event["queryStringParameters"] = {"limit": "2"}
    event["rawQueryString"] = "limit=2"
    status, page1, _ = call(event, lambda_context)
    assert status == 200 and [r["id"] for r in page1["items"]] == made[::-1][:2]
    event["queryStringParameters"]["cursor"] = page1["next_cursor"]
    _, page2, _ = call(event, lambda_context)
    assert [r["id"] for r in page2["items"]] == made[:1] and page2["next_cursor"] is None


def test_query_validation_answers_with_a_message(aws, production, lambda_context):
    event = load_event("api_list_predictions.json")
    event["queryStringParameters"] = {"limit": "1000"}
    status, body, _ = call(event, lambda_context)
    assert status == 422 and "limit" in body["message"]


def test_input_of_strokes_is_rendered_as_png(aws, production, lambda_context):
    strokes_body = base64.b64decode(load_event("api_recognize.json")["body"])
    event = with_body(load_event("api_create_prediction.json"), strokes_body, "application/json")
    record = predict(lambda_context, event=event)
    status, png, headers = call(
        at_prediction(load_event("api_get_prediction_input.json"), record["id"], "/input"),
        lambda_context,
    )
    assert status == 200 and headers["Content-Type"] == "image/png" and png.startswith(b"\x89PNG")
    event = at_prediction(load_event("api_get_prediction_input.json"), record["id"], "/input")
    event["queryStringParameters"] = {"original": "true"}
    _, original, _ = call(event, lambda_context)
    assert json.loads(original)[0] == [[10, 10], [40, 40]]


def test_input_of_an_image_is_returned_as_sent(aws, production, lambda_context):
    record = predict(lambda_context)
    status, data, headers = call(
        at_prediction(load_event("api_get_prediction_input.json"), record["id"], "/input"),
        lambda_context,
    )
    sent = base64.b64decode(load_event("api_create_prediction.json")["body"])
    assert status == 200 and data == sent and headers["Content-Type"] == "image/png"


def test_delete_erases_record_and_input_every_version(aws, production, lambda_context):
    record = predict(lambda_context)
    status, _, _ = call(
        as_user(at_prediction(load_event("api_delete_prediction.json"), record["id"]), "user-2"),
        lambda_context,
    )
    assert status == 404
    status, body, _ = call(
        at_prediction(load_event("api_delete_prediction.json"), record["id"]), lambda_context
    )
    assert status == 204 and body is None
    for prefix in ("inputs/", "predictions/"):  # (metrics/ holds counts, no user data)
        versions = aws.s3.list_object_versions(Bucket=aws.data_bucket, Prefix=prefix)
        assert "Versions" not in versions and "DeleteMarkers" not in versions
    status, _, _ = call(
        at_prediction(load_event("api_get_prediction.json"), record["id"]), lambda_context
    )
    assert status == 404


def test_malformed_id_is_refused(aws, production, lambda_context):
    # an id off its pattern names nothing that can exist: 404, with the pattern as the reason
    for bad in ("not-an-id", "..%2F..%2Fmetrics"):
        status, body, _ = call(
            at_prediction(load_event("api_get_prediction.json"), bad), lambda_context
        )
        assert status == 404 and "prediction_id" in body["message"], (bad, body)


def test_uploads_presigns_a_put_under_the_callers_prefix(aws, lambda_context):
    status, body, _ = call(load_event("api_create_upload.json"), lambda_context)
    assert status == 201, body
    assert body["key"].startswith("uploads/user-1/") and body["key"].endswith("-photo_one.jpg")
    assert body["method"] == "PUT" and "X-Amz-Signature=" in body["url"]
    assert body["headers"] == {"Content-Type": "image/jpeg"}
    event = with_body(
        load_event("api_create_upload.json"),
        json.dumps({"filename": "x.exe", "content_type": "application/x-msdownload"}).encode(),
        "application/json",
    )
    status, body, _ = call(event, lambda_context)
    assert status == 422 and "content_type" in body["message"]


def test_signed_in_routes_refuse_requests_without_a_subject(aws, lambda_context):
    event = load_event("api_list_predictions.json")
    del event["requestContext"]["authorizer"]
    status, body, _ = call(event, lambda_context)
    assert status == 401 and "sign in" in body["message"]


def test_models_health_and_openapi(aws, production, lambda_context):
    status, body, _ = call(load_event("api_health.json"), lambda_context)
    assert status == 200 and body == {"status": "ok", "loaded_version": None}
    status, body, _ = call(load_event("api_get_models.json"), lambda_context)
    assert status == 200 and body["production"]["version"] == production
    status, body, _ = call(load_event("api_openapi.json"), lambda_context)
    assert status == 200 and body["openapi"].startswith("3.")
    assert {"/recognize", "/predictions", "/predictions/{prediction_id}/input", "/uploads"} <= set(
        body["paths"]
    )
    assert "UploadRequest" in json.dumps(body["components"])


def test_registry_details_are_for_operators(aws, production, lambda_context):
    event = load_event("api_get_models.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/models/registry"
    event["requestContext"]["authorizer"] = load_event("api_list_predictions.json")[
        "requestContext"
    ]["authorizer"]
    status, body, _ = call(copy_of(event), lambda_context)
    assert status == 403
    event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = "[operators]"
    status, body, _ = call(event, lambda_context)
    assert status == 200 and body["aliases"]["production"]["version"] == production
    assert body["aliases"]["production"]["history"][0]["reason"] == "test setup"


def copy_of(event: dict) -> dict:
    return json.loads(json.dumps(event))


def test_no_model_promoted_is_a_503_with_a_reason(aws, lambda_context):
    status, body, _ = call(load_event("api_recognize.json"), lambda_context)
    assert status == 503 and "promote" in body["message"]


def test_a_corrupt_package_is_never_served(aws, production, lambda_context, tmp_path, monkeypatch):
    monkeypatch.setenv("ALIAS_MAX_AGE_S", "0")  # see every promotion at once
    api.wiring.services.cache_clear()
    bad = tmp_path / "bad"  # a package whose encoder does not match its manifest
    bad.mkdir()
    for path in TINY_MODEL.iterdir():
        (bad / path.name).write_bytes(path.read_bytes())
    (bad / "encoder.onnx").write_bytes(b"corrupted")
    manifest = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**manifest, "version": "bad-1"}))
    aws.upload_package(bad, "bad-1")

    assert call(load_event("api_recognize.json"), lambda_context)[0] == 200
    aws.registry.promote("bad-1", reason="test")
    # warm: the container keeps serving the model it has
    status, body, _ = call(load_event("api_recognize.json"), lambda_context)
    assert status == 200 and body["model_version"] == production
    # cold: a new container answers 503 with the reason
    api.wiring.services.cache_clear()
    status, body, _ = call(load_event("api_recognize.json"), lambda_context)
    assert status == 503 and "bad-1" in body["message"] and "encoder.onnx" in body["message"]
    # the alias moves back: served again without a restart
    aws.registry.rollback(reason="bad package")
    assert call(load_event("api_recognize.json"), lambda_context)[0] == 200


def test_feedback_is_validated_against_its_schema(aws, lambda_context):
    # the route itself is tested in test_feedback.py
    event = load_event("api_create_feedback.json")
    status, body, _ = call(with_body(event, b"{}", "application/json"), lambda_context)
    assert status == 422 and "prediction_id" in body["message"]


def test_unknown_route_is_a_json_404(aws, lambda_context):
    event = load_event("api_health.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/nope"
    status, body, _ = call(event, lambda_context)
    assert status == 404 and "/nope" in body["message"]
