"""The local stack, whole: `inktex up` on free ports, then requests as a browser or a shell
would make them. Fixture images are real CROHME samples (tests/fixtures/README.md).

The tests share one stack (module scope: conftest.stack) and run in file order; the restart
test is last.
"""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

import pytest
from botocore.exceptions import ClientError
from stack_kit import EVENTS, IMAGE, REPO, TINY_MODEL, bearer, free_port, request, wait_for

from local_stack.template import Stack
from local_stack.tokens import Issuer, subject_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def expected_latex() -> str:
    """What `inktex predict` gives for the fixture with the same model."""
    from inktex.runtime import OnnxRecognizer

    return OnnxRecognizer.load(TINY_MODEL).recognize_file(IMAGE).latex


def test_recognize_returns_latex_without_signing_in(stack, expected_latex):
    status, _, body = request(
        "POST", f"{stack.api}/recognize", IMAGE.read_bytes(), {"content-type": "image/png"}
    )
    assert status == 200, body
    result = json.loads(body)
    assert result["latex"] == expected_latex
    assert result["model_version"] == stack.info["model"]["version"]


def test_signed_in_prediction_is_in_that_users_history_only(stack, expected_latex):
    alice, bob = stack.token("alice"), stack.token("bob")
    status, _, body = request(
        "POST",
        f"{stack.api}/predictions",
        IMAGE.read_bytes(),
        {"content-type": "image/png", **bearer(alice)},
    )
    assert status == 201, body
    created = json.loads(body)
    assert created["latex"] == expected_latex
    status, _, body = request("GET", f"{stack.api}/predictions", headers=bearer(alice))
    assert status == 200
    assert created["id"] in [item["id"] for item in json.loads(body)["items"]]
    status, _, body = request("GET", f"{stack.api}/predictions", headers=bearer(bob))
    assert status == 200
    assert created["id"] not in [item["id"] for item in json.loads(body)["items"]]
    stack.alice_prediction = created["id"]


def test_missing_forged_or_expired_tokens_get_401(stack, tmp_path):
    url = f"{stack.api}/predictions"
    good = stack.token("alice")
    template_issuer = Stack.from_file(REPO / "template.yaml").http_api()
    authorizer = next(iter(template_issuer.authorizers.values()))
    other_key = Issuer.load(tmp_path, authorizer.issuer, authorizer.audience[0])
    head, body, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = subject_of("mallory")
    tampered = (
        f"{head}.{base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip('=')}.{sig}"
    )
    wrong_aud = Issuer.load(stack.state_dir, authorizer.issuer, "someoneelse").id_token("alice")
    for headers in (
        {},
        bearer("not-a-jwt"),
        bearer(other_key.id_token("alice")),  # the right issuer's name, not its key
        bearer(tampered),
        bearer(stack.token("alice", ttl=-5)),  # expired
        bearer(wrong_aud),
    ):
        status, _, body = request("GET", url, headers=headers)
        assert status == 401, (headers, body)
        assert json.loads(body) == {"message": "Unauthorized"}
    assert request("GET", url, headers=bearer(good))[0] == 200


def test_an_s3_drop_under_uploads_produces_a_prediction(stack, expected_latex):
    s3 = stack.aws("s3")
    bucket = stack.info["resources"]["DataBucketName"]
    owner = subject_of("alice")
    key = f"uploads/{owner}/photo one.png"  # a space: the event URL-encodes it
    s3.upload_file(str(IMAGE), bucket, key)
    s3.upload_file(str(IMAGE), bucket, f"inputs/{owner}/not-a-drop.png")  # no notification

    def dropped():
        status, _, body = request(
            "GET", f"{stack.api}/predictions", headers=bearer(stack.token("alice"))
        )
        items = json.loads(body)["items"]
        return [(i, items) for i in items if i.get("source_key") == key]

    found, items = wait_for("the drop's prediction", dropped)[0]
    assert found["latex"] == expected_latex
    assert not any("not-a-drop" in str(i.get("source_key")) for i in items)


def test_conditional_writes_are_atomic(stack):
    s3 = stack.aws("s3")
    bucket = stack.info["resources"]["DataBucketName"]

    def claim(key_and_i) -> bool:
        key, i = key_and_i
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=str(i).encode(), IfNoneMatch="*")
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "PreconditionFailed"
            return False
        return True

    with ThreadPoolExecutor(12) as pool:
        for round_ in range(5):
            key = f"feedback/claim-test-{round_}"
            assert sum(pool.map(claim, [(key, i) for i in range(24)])) == 1


def test_sign_in_page_redirects_back_with_a_code_for_a_token(stack):
    client_id = stack.info["auth"]["audience"]
    redirect = f"{stack.api}/callback"
    query = urlencode(
        {"client_id": client_id, "response_type": "code", "redirect_uri": redirect, "state": "s1"}
    )
    status, _, page = request("GET", f"{stack.api}/oauth2/authorize?{query}")
    assert status == 200 and b"<form" in page
    form = urlencode(
        {
            "username": "carol",
            "client_id": client_id,
            "redirect_uri": redirect,
            "state": "s1",
            "response_type": "code",
        }
    ).encode()
    status, headers, _ = request(
        "POST", f"{stack.api}/login", form, {"content-type": "application/x-www-form-urlencoded"}
    )
    assert status == 302
    location = urlsplit(headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect
    back = parse_qs(location.query)
    assert back["state"] == ["s1"]
    exchange = urlencode(
        {
            "grant_type": "authorization_code",
            "code": back["code"][0],
            "client_id": client_id,
            "redirect_uri": redirect,
        }
    ).encode()
    status, _, body = request(
        "POST",
        f"{stack.api}/oauth2/token",
        exchange,
        {"content-type": "application/x-www-form-urlencoded"},
    )
    assert status == 200, body
    tokens = json.loads(body)
    assert request("GET", f"{stack.api}/predictions", headers=bearer(tokens["id_token"]))[0] == 200
    bad = request(
        "GET",
        f"{stack.api}/oauth2/authorize?"
        + urlencode({"client_id": client_id, "redirect_uri": "https://evil.example/cb"}),
    )
    assert bad[0] == 400


def test_the_web_ui_and_its_config_are_served(stack):
    status, headers, body = request("GET", f"{stack.api}/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    status, _, body = request("GET", f"{stack.api}/config.json")
    assert status == 200 and json.loads(body)["apiUrl"] == stack.api


def test_throttling_answers_429_with_the_limits_and_retry_after(stack):
    # POST /recognize locally: 10 a second, bursts of 20 (local_stack/stack.py; the
    # cloud's are template.yaml's 2 and 5). An empty body is refused fast.
    def hit(_):
        return request("POST", f"{stack.api}/recognize", b"", {"content-type": "image/png"})

    # 64 at once: more than the burst arrive together, however long each answer takes
    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(hit, range(128)))
    statuses = [status for status, _, _ in answers]
    assert 429 in statuses
    assert any(s != 429 for s in statuses)
    _, headers, body = next(a for a in answers if a[0] == 429)
    assert json.loads(body)["message"] == (
        "Too Many Requests: POST /recognize allows 10 requests a second (bursts of up to 20); "
        f"retry after {headers['retry-after']} s"
    )
    assert int(headers["retry-after"]) >= 1


def test_restart_keeps_the_history(stack):
    prediction = getattr(stack, "alice_prediction", None)
    assert prediction, "needs test_signed_in_prediction_is_in_that_users_history_only"
    stack.down()
    stack.up()
    assert stack.info["restored"] is True
    status, _, body = request(
        "GET", f"{stack.api}/predictions", headers=bearer(stack.token("alice"))
    )
    assert status == 200
    assert prediction in [item["id"] for item in json.loads(body)["items"]]


# --- the gateway's events have API Gateway's shape ------------------------------------------


def _shape(value, depth=0):
    """The key structure of an event (values ignored), down to requestContext's members."""
    if isinstance(value, dict) and depth < 3:
        return {k: _shape(v, depth + 1) for k, v in value.items() if k not in ("claims",)}
    return None


@pytest.mark.parametrize(
    ("sample", "method", "path", "signed_in", "content_type"),
    [
        ("api_create_prediction.json", "POST", "/predictions", True, "image/png"),
        ("api_recognize.json", "POST", "/recognize", False, "application/json"),
        ("api_list_predictions.json", "GET", "/predictions?limit=20", True, None),
        (
            "api_get_prediction.json",
            "GET",
            "/predictions/8234567890123-0123456789abcdef01234567",
            True,
            None,
        ),
        ("api_health.json", "GET", "/health", False, None),
    ],
)
def test_gateway_events_match_the_sample_events(
    capturing_gateway, sample, method, path, signed_in, content_type
):
    url, issuer, seen = capturing_gateway
    expected = json.loads((EVENTS / sample).read_text())
    headers = {"accept": "application/json"}
    if content_type:
        headers["content-type"] = content_type
    if signed_in:
        headers.update(bearer(issuer.id_token("user-1")))
    body = (
        IMAGE.read_bytes()
        if content_type == "image/png"
        else (json.dumps({"strokes": [[[10, 10], [40, 40]]]}).encode() if content_type else None)
    )
    status, _, _ = request(method, url + path, body, headers)
    assert status == 200
    event = seen[-1]
    assert _shape(event) == {**_shape(expected), "headers": _shape(event)["headers"]}
    assert event["routeKey"] == expected["routeKey"]
    if content_type == "image/png":  # binary bodies are base64, text ones (JSON) need not be
        assert event["isBase64Encoded"] is True
    assert set(expected["headers"]) <= set(event["headers"])
    if signed_in:
        claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
        assert set(expected["requestContext"]["authorizer"]["jwt"]["claims"]) <= set(claims)
        assert all(isinstance(v, str) for v in claims.values())  # as API Gateway passes them


def test_s3_notifications_carry_the_sample_events_shape(tmp_path):
    """What template.yaml's S3 event wiring delivers has the shape of events/s3_upload.json.
    (In this process, without pollers, so the queued event can be read as the handler gets it.)"""
    from local_stack import emulator
    from local_stack.guard import Credentials
    from local_stack.journal import Journal

    stack = Stack.from_file(REPO / "template.yaml")
    moto = emulator.Moto(free_port(), Credentials.load(tmp_path), Journal(tmp_path), stack.region)
    moto.start()
    try:
        provisioned = emulator.provision(stack, moto)
        (delivery,) = [
            d
            for d in provisioned["deliveries"]
            if d["source"] == "s3" and d["notification"].function == "UploadInferenceFunction"
        ]
        notification = delivery["notification"]
        s3, sqs = moto.client("s3"), moto.client("sqs")
        s3.put_object(Bucket=notification.bucket, Key="uploads/user-1/photo one.png", Body=b"x")
        s3.put_object(Bucket=notification.bucket, Key="inputs/user-1/a.png", Body=b"x")
        got = sqs.receive_message(
            QueueUrl=delivery["queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=2
        )
        events = [json.loads(m["Body"]) for m in got["Messages"]]
    finally:
        moto.stop()
        moto.journal.close()
    assert len(events) == 1  # the prefix filter keeps inputs/ out
    expected = json.loads((EVENTS / "s3_upload.json").read_text())
    (record,), (sample,) = events[0]["Records"], expected["Records"]
    assert _shape(record) == _shape(sample)
    assert record["s3"]["object"]["key"] == "uploads/user-1/photo+one.png"  # as S3 encodes it
    assert unquote_plus(record["s3"]["object"]["key"]) == unquote_plus(
        sample["s3"]["object"]["key"]
    )
    assert set(record["s3"]["object"]) == set(sample["s3"]["object"])
