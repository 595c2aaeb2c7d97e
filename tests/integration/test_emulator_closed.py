"""The AWS emulator is closed as AWS is (issue 18, "Closed"): loopback only, no browser, only
the stack's own keys, presigned URLs checked, its secrets readable by their owner only.

Each attack here worked on the emulator before: a page on any origin read the data bucket
and the metrics token, an unsigned PUT and a presigned URL rewritten to another user's prefix
were both accepted.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from stack_kit import IMAGE, bearer, request

from local_stack.guard import Credentials
from local_stack.tokens import subject_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


def s3_error(body: bytes) -> str:
    """The <Code> of an S3 error body."""
    text = body.decode(errors="replace")
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else text


def test_the_emulator_listens_on_loopback_only(stack):
    endpoint = urlsplit(stack.info["aws_endpoint"])
    assert endpoint.hostname == "127.0.0.1"
    if shutil.which("ss"):
        listening = subprocess.run(
            ["ss", "-ltnH", f"sport = :{endpoint.port}"], capture_output=True, text=True
        ).stdout.split()
        assert listening[3] == f"127.0.0.1:{endpoint.port}", listening


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/{bucket}", {}),  # list the data bucket
        ("OPTIONS", "/{bucket}", {"access-control-request-method": "PUT"}),  # a preflight
        ("POST", "/", {"x-amz-target": "secretsmanager.GetSecretValue"}),  # the metrics token
    ],
)
def test_a_browser_page_on_any_origin_gets_403_and_no_cors(stack, method, path, headers):
    bucket = stack.info["resources"]["DataBucketName"]
    url = stack.info["aws_endpoint"] + path.format(bucket=bucket)
    status, got, body = request(method, url, None, {"origin": "https://evil.example", **headers})
    assert status == 403, body[:300]
    assert not [k for k in got if k.lower().startswith("access-control-")], dict(got)
    token = Path(stack.info["metrics"]["token_file"]).read_bytes().strip()
    assert b"ListBucketResult" not in body and token not in body  # no listing, no secret


def test_unsigned_and_foreign_key_requests_are_refused(stack):
    bucket = stack.info["resources"]["DataBucketName"]
    key = f"uploads/{subject_of('alice')}/unsigned.png"
    url = f"{stack.info['aws_endpoint']}/{bucket}/{key}"
    status, _, body = request("PUT", url, IMAGE.read_bytes(), {"content-type": "image/png"})
    assert (status, s3_error(body)) == (403, "AccessDenied")
    assert request("GET", f"{stack.info['aws_endpoint']}/{bucket}")[0] == 403

    def with_keys(key_id: str, secret: str):
        return boto3.client(
            "s3",
            endpoint_url=stack.info["aws_endpoint"],
            region_name=stack.info["region"],
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
        )

    own = stack.aws("s3")
    mine = Credentials.load(stack.state_dir, create=False).access_key_id
    for client, code in (
        (with_keys("testing", "testing"), "InvalidAccessKeyId"),  # what moto takes by default
        (with_keys(mine, "not-the-secret"), "SignatureDoesNotMatch"),
    ):
        with pytest.raises(ClientError) as refused:
            client.put_object(Bucket=bucket, Key=key, Body=b"x")
        assert refused.value.response["Error"]["Code"] == code
    with pytest.raises(ClientError):
        own.head_object(Bucket=bucket, Key=key)  # nothing was written
    # moto's control API (reset, seed) is not reachable either
    assert request("POST", f"{stack.info['aws_endpoint']}/moto-api/reset")[0] == 403
    assert own.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_tampered_presigned_url_fails_as_in_s3(stack):
    alice = stack.token("alice")
    status, _, raw = request(
        "POST",
        f"{stack.api}/uploads",
        json.dumps({"filename": "photo.png", "content_type": "image/png"}).encode(),
        {"content-type": "application/json", **bearer(alice)},
    )
    assert status == 201, raw
    upload = json.loads(raw)
    parts = urlsplit(upload["url"])
    victim = f"uploads/{subject_of('bob')}/"
    rewritten = parts.path.replace(f"uploads/{subject_of('alice')}/", victim)
    assert rewritten != parts.path
    tampered = urlunsplit(parts._replace(path=rewritten))
    status, _, body = request("PUT", tampered, IMAGE.read_bytes(), upload["headers"])
    assert (status, s3_error(body)) == (403, "SignatureDoesNotMatch")
    longer = urlunsplit(
        parts._replace(query=parts.query.replace("X-Amz-Expires=", "X-Amz-Expires=9"))
    )
    assert request("PUT", longer, IMAGE.read_bytes(), upload["headers"])[0] == 403
    listed = stack.aws("s3").list_objects_v2(
        Bucket=stack.info["resources"]["DataBucketName"], Prefix=victim
    )
    assert listed.get("KeyCount", 0) == 0  # nothing reached bob's prefix
    # the URL as issued still works
    status, _, body = request("PUT", upload["url"], IMAGE.read_bytes(), upload["headers"])
    assert status == 200, body


def test_the_stacks_secrets_are_readable_by_their_owner_only(stack):
    files = [
        Path(stack.info["metrics"]["token_file"]),
        Path(stack.info["aws_credentials"]["file"]),
        *sorted(Path(stack.info["state_dir"]).glob("issuer-key*")),
    ]
    assert len(files) >= 3, files
    for path in files:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path.name, oct(mode))


def test_the_web_uis_presigned_upload_is_the_one_browser_request_allowed(stack):
    """S3's CORS rules of template.yaml let the UI's origin PUT a photo with its presigned
    URL, preflight first, as S3 does; nothing else with an Origin gets through."""
    status, _, raw = request(
        "POST",
        f"{stack.api}/uploads",
        json.dumps({"filename": "big.png", "content_type": "image/png"}).encode(),
        {"content-type": "application/json", **bearer(stack.token("alice"))},
    )
    assert status == 201, raw
    upload = json.loads(raw)
    ui = stack.api  # the gateway's own origin is one of the bucket's allowed origins
    preflight = {
        "origin": ui,
        "access-control-request-method": "PUT",
        "access-control-request-headers": "content-type",
    }
    status, headers, _ = request("OPTIONS", upload["url"], None, preflight)
    assert status == 200 and headers["access-control-allow-origin"] == ui
    assert "PUT" in headers["access-control-allow-methods"]
    assert headers["access-control-allow-headers"] == "content-type"
    assert headers["access-control-max-age"] == "600"  # template.yaml's MaxAge
    evil = {**preflight, "origin": "https://evil.example"}
    assert request("OPTIONS", upload["url"], None, evil)[0] == 403
    put = {**upload["headers"], "origin": ui}
    status, headers, body = request("PUT", upload["url"], IMAGE.read_bytes(), put)
    assert status == 200, body
    assert headers["access-control-allow-origin"] == ui
    foreign = {**upload["headers"], "origin": "https://evil.example"}
    assert request("PUT", upload["url"], IMAGE.read_bytes(), foreign)[0] == 403
    bucket = stack.info["resources"]["DataBucketName"]
    listing = request("GET", f"{stack.info['aws_endpoint']}/{bucket}", None, {"origin": ui})
    assert listing[0] == 403  # not presigned, not a rule's method: refused even from the UI


def test_the_bucket_cors_rules_in_the_emulator_are_what_the_guard_applies(stack):
    """The data bucket's CORS rules are in the emulator as template.yaml declares them
    (GetBucketCors), and browsers are answered by what the bucket holds, as in S3."""
    s3 = stack.aws("s3")
    bucket = stack.info["resources"]["DataBucketName"]
    rules = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert [(r["AllowedMethods"], r["AllowedHeaders"], r["MaxAgeSeconds"]) for r in rules] == [
        (["PUT"], ["content-type"], 600)
    ]
    assert stack.api in rules[0]["AllowedOrigins"]  # the stack's own web origin
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "uploads/x/cors.png"}, ExpiresIn=60
    )
    preflight = {"origin": stack.api, "access-control-request-method": "PUT"}
    assert request("OPTIONS", url, None, preflight)[0] == 200
    s3.delete_bucket_cors(Bucket=bucket)
    try:
        status, headers, _ = request("OPTIONS", url, None, preflight)
        assert status == 403 and "access-control-allow-origin" not in headers
    finally:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    assert request("OPTIONS", url, None, preflight)[0] == 200
