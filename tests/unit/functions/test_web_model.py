"""GET /models/production/web and its graphs: what the browser's live recognition loads."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil

from lambda_testkit import TINY_MODEL, load_event

from functions.api import app as api
from functions.common import web_model


def get(path: str, lambda_context, headers: dict | None = None):
    event = load_event("api_get_models.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["headers"].update(headers or {})
    response = api.lambda_handler(event, lambda_context)
    body = response.get("body") or b""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body)
    return response["statusCode"], body, {k.lower(): v for k, v in response["headers"].items()}


def test_the_manifest_names_production_and_its_graphs_by_hash(aws, production, lambda_context):
    status, body, headers = get("/models/production/web", lambda_context)
    assert status == 200, body
    manifest = json.loads(body)
    assert manifest["version"] == production and manifest["browser"] is True
    assert manifest["vocab"] == json.loads((TINY_MODEL / "vocab.json").read_text())
    assert manifest["preprocess"] == json.loads((TINY_MODEL / "preprocess.json").read_text())
    assert manifest["search"]["beam_size"] >= 1 and manifest["search"]["max_len"] > 0
    package = json.loads((TINY_MODEL / "manifest.json").read_text())
    for name in web_model.WEB_FILES:
        entry = manifest["files"][name]
        assert entry["sha256"] == package["files"][name]
        assert entry["url"] == f"/models/{production}/web/{name}"
    assert headers["cache-control"] == "no-cache"
    # revalidation: the same manifest is a 304 without a body
    status, body, _ = get(
        "/models/production/web", lambda_context, {"if-none-match": headers["etag"]}
    )
    assert status == 304 and not body


def test_a_graph_is_served_immutable_with_its_hash(aws, production, lambda_context):
    path = f"/models/{production}/web/encoder.onnx"
    status, body, headers = get(path, lambda_context)
    assert status == 200
    assert body == (TINY_MODEL / "encoder.onnx").read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    assert headers["etag"] == f'"{digest}"'
    assert "immutable" in headers["cache-control"]
    status, body, _ = get(path, lambda_context, {"if-none-match": f'"{digest}"'})
    assert status == 304 and not body


def test_only_productions_graphs_are_served(aws, production, lambda_context):
    status, body, _ = get("/models/other-1/web/encoder.onnx", lambda_context)
    assert status == 404 and "not in production" in json.loads(body)["message"]
    status, body, _ = get(f"/models/{production}/web/vocab.onnx", lambda_context)
    assert status == 404 and "not a graph" in json.loads(body)["message"]
    status, _, _ = get(f"/models/{production}/web/manifest.json", lambda_context)
    assert status == 404  # off the route's pattern


def test_no_production_model_is_a_503_with_a_reason(aws, lambda_context):
    status, body, _ = get("/models/production/web", lambda_context)
    assert status == 503 and "promote" in json.loads(body)["message"]


def test_a_graph_that_does_not_match_its_manifest_is_never_served(aws, production, lambda_context):
    aws.s3.put_object(
        Bucket=aws.model_bucket, Key=f"models/{production}/decoder_step.onnx", Body=b"altered"
    )
    status, body, _ = get(f"/models/{production}/web/decoder_step.onnx", lambda_context)
    assert status == 503 and "does not match" in json.loads(body)["message"]


def test_a_graph_too_large_for_an_answer_leaves_the_browser_to_the_server(
    aws, production, lambda_context, monkeypatch
):
    monkeypatch.setattr(web_model, "MAX_FILE_BYTES", 1000)
    status, body, _ = get("/models/production/web", lambda_context)
    manifest = json.loads(body)
    assert status == 200 and manifest["browser"] is False and manifest["files"] is None
    assert "server only" in manifest["reason"]


def _package(tmp_path, **settings) -> tuple:
    """The tiny package with model.json's `settings` changed (as the export writes them for
    another decoder), and, for a bidirectional one, its read graph (here the tiny step graph's
    bytes: the route serves bytes by their hash, it runs nothing)."""
    from inktex.package import write_manifest

    package = tmp_path / "package"
    shutil.copytree(TINY_MODEL, package)
    model = json.loads((package / "model.json").read_text()) | settings
    (package / "model.json").write_text(json.dumps(model))
    if settings.get("bidirectional"):
        shutil.copyfile(package / "decoder_step.onnx", package / web_model.READ_FILE)
    write_manifest(package, model["version"])
    return package, json.loads((package / "manifest.json").read_text())


def _promote(aws, package, version: str) -> str:
    version = aws.upload_package(package, version=version)
    aws.registry.promote(version, reason="test setup", by="pytest")
    return version


def test_a_transformer_read_both_ways_offers_its_read_graph(aws, lambda_context, tmp_path):
    package, hashes = _package(tmp_path, decoder="transformer", bidirectional=True)
    version = _promote(aws, package, "transformer-1")
    status, body, _ = get("/models/production/web", lambda_context)
    manifest = json.loads(body)
    assert status == 200 and manifest["browser"] is True and manifest["reason"] == ""
    assert manifest["search"]["decoder"] == "transformer"
    assert manifest["search"]["bidirectional"] is True  # the page rescores right to left
    assert sorted(manifest["files"]) == sorted([*web_model.WEB_FILES, web_model.READ_FILE])
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == hashes["files"][name]
        assert entry["url"] == f"/models/{version}/web/{name}"
    status, body, headers = get(f"/models/{version}/web/{web_model.READ_FILE}", lambda_context)
    assert status == 200 and body == (package / web_model.READ_FILE).read_bytes()
    assert "immutable" in headers["cache-control"]


def test_a_package_read_one_way_offers_no_read_graph(aws, production, lambda_context):
    status, body, _ = get("/models/production/web", lambda_context)
    manifest = json.loads(body)
    assert sorted(manifest["files"]) == sorted(web_model.WEB_FILES)
    assert manifest["search"]["decoder"] == "gru"  # an older package names none: a GRU
    status, body, _ = get(f"/models/{production}/web/{web_model.READ_FILE}", lambda_context)
    assert status == 404 and "has no decoder_read.onnx" in json.loads(body)["message"]


def test_a_decoder_the_page_cannot_drive_leaves_the_browser_to_the_server(
    aws, lambda_context, tmp_path
):
    package, _ = _package(tmp_path, decoder="lstm")
    version = _promote(aws, package, "lstm-1")
    status, body, _ = get("/models/production/web", lambda_context)
    manifest = json.loads(body)
    assert status == 200 and manifest["browser"] is False and manifest["files"] is None
    assert "lstm" in manifest["reason"] and "server only" in manifest["reason"]
    status, body, _ = get(f"/models/{version}/web/decoder_step.onnx", lambda_context)
    assert status == 404 and "server only" in json.loads(body)["message"]
