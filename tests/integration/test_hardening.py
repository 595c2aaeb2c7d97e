"""Hardening (issue 11), against the running local stack: hostile input, limits, who may see
what, a user's erasure, faults and load. docs/security.md describes what these prove.

The stack runs in this process on free ports (local_stack.stack), with one difference
from `inktex up`: the functions reach the AWS emulator through a small proxy of this
module's, which can answer chosen requests with S3 errors (a fault injected on the wire, not
a fake storage class). The retraining threshold is set out of reach, so the load test's
corrections start no training job. Tests share the stack and run in file order.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image
from stack_kit import IMAGE, REPO, TINY_MODEL, bearer, free_port, request

from functions.common.feedback import HELD, PENDING, USED, FeedbackStore, owner_tag
from functions.common.retraining import FeedbackBatches
from functions.common.store import input_key
from local_stack.stack import LocalSettings, LocalStack
from local_stack.tokens import subject_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

INKML = REPO / "tests" / "fixtures" / "inkml" / "518_em_425.inkml"
LOAD_SECONDS = 20
LOAD_CLIENTS = 16


# --- a fault-injecting proxy between the functions and the AWS emulator ------------------


class FaultProxy:
    """Forwards HTTP to the emulator; a request that a rule matches gets an S3 error."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.rules: list[tuple[str, re.Pattern, int, str]] = []  # method, path, status, code
        self.injected = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                proxy.forward(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, method: str, path_regex: str, status: int = 500, code: str = "InternalError"):
        self.rules.append((method, re.compile(path_regex), status, code))

    def heal(self) -> None:
        self.rules.clear()

    def forward(self, h: BaseHTTPRequestHandler) -> None:
        if "chunked" in h.headers.get("transfer-encoding", "").lower():
            body = b""
            while (size := int(h.rfile.readline().split(b";")[0], 16)) > 0:
                body += h.rfile.read(size)
                h.rfile.readline()
            h.rfile.readline()
        else:
            body = h.rfile.read(int(h.headers.get("content-length") or 0))
        for method, pattern, status, code in list(self.rules):
            if h.command == method and pattern.search(h.path):
                self.injected += 1
                xml = f"<Error><Code>{code}</Code><Message>injected by the test</Message></Error>"
                return self._answer(h, status, {"content-type": "application/xml"}, xml.encode())
        headers = {
            k: v for k, v in h.headers.items() if k.lower() not in ("transfer-encoding", "host")
        }
        headers["content-length"] = str(len(body))
        headers["host"] = h.headers["host"]  # signed by the function: kept, as a proxy must
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            conn.request(h.command, h.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            dropped = ("transfer-encoding", "content-length", "connection", "server", "date")
            out = {k: v for k, v in response.getheaders() if k.lower() not in dropped}
            length = response.getheader("content-length") if h.command == "HEAD" else None
            self._answer(h, response.status, out, data, length)
        finally:
            conn.close()

    @staticmethod
    def _answer(h, status: int, headers: dict, data: bytes, length: str | None = None) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("content-length", length or str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Running:
    def __init__(self, stack: LocalStack, proxy: FaultProxy, state_dir: Path):
        self.stack, self.proxy, self.state_dir = stack, proxy, state_dir
        self.info = stack.info()
        self.api = self.info["api_url"]
        self.bucket = self.info["resources"]["DataBucketName"]
        self.s3 = stack.moto.client("s3")

    def token(self, user: str, ttl: int = 600, groups: list[str] | None = None) -> str:
        return self.stack.gateway.issuer.id_token(user, ttl_s=ttl, groups=groups or [])

    def recycle(self, function: str = "ApiFunction") -> None:
        """A fresh container: a new process and an empty /tmp (its model cache)."""
        self.stack.runtimes[function].stop()
        shutil.rmtree(self.state_dir / "cache" / function, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, start_in_process):
    state_dir = tmp_path_factory.mktemp("hardening")
    settings = LocalSettings(
        aws_port=free_port(),
        api_port=free_port(),
        state_dir=state_dir,
        model=TINY_MODEL,
        # the cloud's throttle on POST /recognize (the load test exceeds it by design)
        parameter_overrides={
            "RetrainingThreshold": "1000000",
            "RecognizeRateLimit": "2",
            "RecognizeBurstLimit": "5",
        },
    )
    proxy = FaultProxy(settings.aws_port)
    try:
        settings.function_env = {"AWS_ENDPOINT_URL": proxy.url}
        yield Running(start_in_process(settings), proxy, state_dir)
    finally:
        proxy.close()


def call(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    """`request`, waiting out the throttle (429) so that each case sees its own answer."""
    for _ in range(40):
        status, got_headers, data = request(method, url, body, headers)
        if status != 429:
            return status, got_headers, data
        time.sleep(0.5)
    raise AssertionError(f"{method} {url} stayed throttled")


def predict(stack: Running, token: str, body: bytes | None = None, kind: str = "image/png"):
    status, _, data = call(
        "POST",
        f"{stack.api}/predictions",
        IMAGE.read_bytes() if body is None else body,
        {"content-type": kind, **bearer(token)},
    )
    assert status == 201, data
    return json.loads(data)


def feedback(stack: Running, token: str, pid: str, latex: str, consent: bool):
    payload = {"prediction_id": pid, "latex": latex, "consent": consent}
    return call(
        "POST",
        f"{stack.api}/feedback",
        json.dumps(payload).encode(),
        {"content-type": "application/json", **bearer(token)},
    )


# --- crafted payloads --------------------------------------------------------------------


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def png_claiming(width: int, height: int, idat: bytes) -> bytes:
    """A grayscale PNG whose header claims any size, with the given compressed pixels."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def bomb() -> bytes:
    """8000 x 8000 (64 MP) of white in about 64 kB: a decompression bomb."""
    rows = (b"\x00" + b"\xff" * 8000) * 8000
    return png_claiming(8000, 8000, zlib.compress(rows, 9))


def bmp_claiming(width: int, height: int) -> bytes:
    import struct

    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE ink [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>
<ink xmlns="http://www.w3.org/2003/InkML"><trace>&c;</trace></ink>"""


# --- the bad-input matrix: one case per id ------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """A bad request and what the API must answer: `path` may name {mine} (alice's
    prediction) or {unknown}; `body` is built when the case runs; `who` sends it."""

    method: str
    path: str
    body: Callable[[str], bytes] | None  # given alice's prediction id
    content_type: str | None
    status: int
    reason: str  # a regular expression the answer's message matches
    who: str = "alice"  # alice, bob, nobody, forged, expired, not-a-jwt


def _fb(latex: str, pid: str | None = None) -> Callable[[str], bytes]:
    def body(mine: str) -> bytes:
        return json.dumps({"prediction_id": pid or mine, "latex": latex, "consent": True}).encode()

    return body


def _const(data: Callable[[], bytes]) -> Callable[[str], bytes]:
    return lambda _mine: data()


UNKNOWN = "8234567890123-0123456789abcdef01234567"
PNG, JSON, INK = "image/png", "application/json", "application/inkml+xml"
STROKE = [[1, 1], [2, 2]]

BAD_INPUTS = {
    "text-as-image": Bad("POST", "/predictions", _const(lambda: b"hello, not an image"), PNG, 400,
                         "not a readable image"),
    "truncated-png": Bad("POST", "/predictions", _const(lambda: IMAGE.read_bytes()[:300]), PNG,
                         400, "not a readable image|truncated|broken"),
    "decompression-bomb": Bad("POST", "/predictions", _const(lambda: bomb()), PNG, 413, "pixels"),
    "huge-dimensions-bmp": Bad("POST", "/predictions",
                               _const(lambda: bmp_claiming(100_000, 100_000)), PNG, 413, "pixels"),
    "blank-page": Bad("POST", "/predictions",
                      _const(lambda: png(Image.new("L", (300, 120), 255))), PNG, 400, "blank"),
    "empty-body": Bad("POST", "/predictions", _const(lambda: b""), PNG, 400, "no body"),
    "nan-in-strokes": Bad("POST", "/predictions",
                          _const(lambda: b'{"strokes": [[[NaN, 1], [2, 3]]]}'), JSON, 400, "NaN"),
    "too-many-strokes": Bad("POST", "/predictions",
                            _const(lambda: json.dumps({"strokes": [STROKE] * 1001}).encode()),
                            JSON, 400, "limit"),
    "malformed-json": Bad("POST", "/predictions", _const(lambda: b'{"strokes": [[[1, 2]'), JSON,
                          400, "not valid JSON"),
    "png-said-to-be-json": Bad("POST", "/predictions", _const(IMAGE.read_bytes), JSON, 400,
                               "not valid JSON"),
    "malformed-inkml": Bad("POST", "/predictions", _const(lambda: b"<ink><trace>1 2, 3"), INK, 400,
                           "well-formed"),
    "inkml-entity-expansion": Bad("POST", "/predictions", _const(lambda: BILLION_LAUGHS), INK, 400,
                                  "DTD|DOCTYPE|entit"),
    "body-over-the-apis-limit": Bad("POST", "/predictions",
                                    _const(lambda: b"\x89PNG" + b"\x00" * (5 * 1024 * 1024)), PNG,
                                    413, "limit is 4194304"),
    "body-over-the-gateways-quota": Bad("POST", "/predictions",
                                        _const(lambda: b"\x00" * (11 * 1024 * 1024)), PNG, 413,
                                        "Too Large"),
    "oversize-latex": Bad("POST", "/feedback", _fb("1+" * 3000), JSON, 422, "4000"),
    "latex-over-the-token-limit": Bad("POST", "/feedback", _fb("1+" * 80 + "1"), JSON, 422,
                                      "limit"),
    "out-of-vocabulary-latex": Bad("POST", "/feedback", _fb("\\aleph + 1"), JSON, 422,
                                   "cannot write"),
    "latex-that-does-not-parse": Bad("POST", "/feedback", _fb("\\frac{1}{"), JSON, 422, "parse"),
    "unknown-prediction-id": Bad("GET", f"/predictions/{UNKNOWN}", None, None, 404,
                                 "no prediction"),
    "feedback-on-an-unknown-prediction": Bad("POST", "/feedback", _fb("x", UNKNOWN), JSON, 404,
                                             "no prediction"),
    "path-traversal-id": Bad("GET", "/predictions/..%2F..%2Fmetrics%2Fstate.json", None, None, 404,
                             "prediction_id"),
    "path-traversal-id-deleted": Bad("DELETE", "/predictions/..%2F..%2Fmodels", None, None, 404,
                                     "prediction_id"),
    "path-traversal-id-in-feedback": Bad("POST", "/feedback", _fb("x", "../../x"), JSON, 422,
                                         "prediction_id"),
    "path-traversal-cursor": Bad("GET", "/predictions?cursor=..%2F..%2Fx", None, None, 422,
                                 "cursor"),
    "traversal-outside-any-route": Bad("GET", "/predictions/../../../etc/passwd", None, None, 404,
                                       "Not Found"),
    "upload-type-not-allowed": Bad("POST", "/uploads", _const(lambda: json.dumps(
        {"filename": "a.svg", "content_type": "image/svg+xml"}).encode()), JSON, 422,
        "content_type"),
    "another-users-prediction": Bad("GET", "/predictions/{mine}", None, None, 404,
                                    "no prediction", "bob"),
    "another-users-prediction-input": Bad("GET", "/predictions/{mine}/input", None, None, 404,
                                          "no prediction", "bob"),
    "deleting-another-users-prediction": Bad("DELETE", "/predictions/{mine}", None, None, 404,
                                             "no prediction", "bob"),
    "correcting-another-users-prediction": Bad("POST", "/feedback", _fb("x"), JSON, 404,
                                               "no prediction", "bob"),
    "no-token": Bad("GET", "/predictions", None, None, 401, "Unauthorized", "nobody"),
    "forged-token": Bad("GET", "/predictions", None, None, 401, "Unauthorized", "forged"),
    "expired-token": Bad("GET", "/predictions", None, None, 401, "Unauthorized", "expired"),
    "not-a-jwt": Bad("GET", "/predictions", None, None, 401, "Unauthorized", "not-a-jwt"),
}  # fmt: skip

# What an answer must not show: a traceback, or where this checkout or its packages live.
INTERNALS = re.compile(r"Traceback|File \"|site-packages|" + re.escape(str(REPO)))


@pytest.fixture(scope="module")
def senders(stack) -> tuple[str, dict[str, dict]]:
    """Alice's prediction, and the Authorization header of each kind of sender."""
    alice = stack.token("alice")
    mine = predict(stack, alice)["id"]
    head, claims_b64, sig = alice.split(".")
    claims = json.loads(base64.urlsafe_b64decode(claims_b64 + "=" * (-len(claims_b64) % 4)))
    claims["sub"] = subject_of("mallory")
    forged_claims = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return mine, {
        "alice": bearer(alice),
        "bob": bearer(stack.token("bob")),
        "nobody": {},
        "forged": bearer(f"{head}.{forged_claims}.{sig}"),
        "expired": bearer(stack.token("alice", ttl=-5)),
        "not-a-jwt": bearer("not-a-jwt"),
    }


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_4xx_with_its_reason_and_the_stack_keeps_serving(stack, senders, case):
    bad = BAD_INPUTS[case]
    mine, auth = senders
    headers = {**auth[bad.who], **({"content-type": bad.content_type} if bad.content_type else {})}
    body = bad.body(mine) if bad.body else None
    got, _, data = call(bad.method, stack.api + bad.path.format(mine=mine), body, headers)
    text = data.decode(errors="replace")
    assert got == bad.status, text[:300]
    assert re.search(bad.reason, json.loads(data)["message"], re.I), text[:300]
    assert not INTERNALS.search(text), text[:300]
    # the stack keeps serving: alice's prediction is intact
    assert call("GET", f"{stack.api}/predictions/{mine}", headers=auth["alice"])[0] == 200


def test_after_bad_inputs_a_good_request_still_succeeds(stack, senders):
    assert predict(stack, stack.token("alice"))["latex"] is not None
    assert call("GET", f"{stack.api}/health")[0] == 200


def test_image_types_are_sniffed_and_keys_are_made_by_the_server(stack):
    alice = stack.token("alice")
    sub = subject_of("alice")
    # a PNG said to be a JPEG, with a query that tries to choose the key: both ignored
    status, _, data = call(
        "POST",
        f"{stack.api}/predictions?key=../../models/x&input_key=x",
        IMAGE.read_bytes(),
        {"content-type": "image/jpeg", **bearer(alice), "x-amz-meta-key": "../x"},
    )
    assert status == 201, data
    record = json.loads(data)
    assert record["input_key"] == input_key(sub, record["id"], ".png")
    assert record["input_content_type"] == "image/png"
    status, headers, _ = call(
        "GET", f"{stack.api}/predictions/{record['id']}/input", headers=bearer(alice)
    )
    assert status == 200 and headers["content-type"] == "image/png"
    assert headers["x-content-type-options"] == "nosniff"
    # an upload's key: the server's prefix and a random part; the file name is sanitised
    status, _, data = call(
        "POST",
        f"{stack.api}/uploads",
        json.dumps(
            {"filename": "../../../predictions/x.json", "content_type": "image/png"}
        ).encode(),
        {"content-type": "application/json", **bearer(alice)},
    )
    assert status == 201, data
    key = json.loads(data)["key"]
    assert re.fullmatch(rf"uploads/{sub}/[0-9a-f]{{16}}-[A-Za-z0-9._-]+", key), key
    assert ".." not in key


def test_cors_answers_only_the_ui_origin(stack):
    ui = stack.api  # the local stack's UI is served from the API's own origin
    path = f"{stack.api}/predictions"
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization",
    }
    status, headers, _ = call("OPTIONS", path, headers={"origin": ui, **preflight})
    assert status == 204 and headers.get("access-control-allow-origin") == ui
    status, headers, _ = call(
        "OPTIONS", path, headers={"origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in {k.lower() for k in headers}
    _, headers, _ = call("GET", f"{stack.api}/health", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in {k.lower() for k in headers}
    _, headers, _ = call(
        "POST",
        f"{stack.api}/oauth2/token",
        b"grant_type=refresh_token&refresh_token=nope",
        {"origin": "https://evil.example", "content-type": "application/x-www-form-urlencoded"},
    )
    assert "access-control-allow-origin" not in {k.lower() for k in headers}
    allowed = stack.stack.stack.http_api().cors.allow_origins
    assert "*" not in allowed


def test_the_ui_has_a_csp_without_unsafe_inline(stack):
    status, headers, page = call("GET", f"{stack.api}/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    policy = {k.lower(): v for k, v in headers.items()}.get("content-security-policy", "")
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy  # wasm-: no JS
    assert policy in page.decode()  # the header is the page's own <meta> policy


def test_metrics_and_the_registry_are_not_open_to_the_world(stack):
    token = Path(stack.info["metrics"]["token_file"]).read_text().strip()
    url = f"{stack.api}/metrics"
    assert call("GET", url)[0] == 401
    assert call("GET", url, headers=bearer("x" * len(token)))[0] == 401
    assert call("GET", url, headers=bearer(stack.token("alice")))[0] == 401  # a user's JWT
    status, _, body = call("GET", url, headers=bearer(token))
    assert status == 200 and b"inktex_predictions_total" in body
    registry = f"{stack.api}/models/registry"
    assert call("GET", registry)[0] == 401
    status, _, body = call("GET", registry, headers=bearer(stack.token("alice")))
    assert status == 403 and "operators" in json.loads(body)["message"]
    operator = stack.token("olga", groups=["operators"])
    assert call("GET", registry, headers=bearer(operator))[0] == 200
    assert call("GET", f"{stack.api}/retraining")[0] == 401
    status, _, body = call("GET", f"{stack.api}/models")  # public: no lineage in it
    assert status == 200 and b"feedback/" not in body and b"lineage" not in body


# --- users' data --------------------------------------------------------------------------


def _versions(stack: Running, prefix: str) -> list[str]:
    page = stack.s3.list_object_versions(Bucket=stack.bucket, Prefix=prefix)
    return [v["Key"] for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]


def test_corrections_train_only_with_consent_and_delete_me_keeps_only_what_was_used(stack):
    erin = stack.token("erin")
    sub = subject_of("erin")
    first, second = predict(stack, erin), predict(stack, erin)
    strokes = json.dumps({"strokes": [[[10, 10], [50, 50]], [[50, 10], [10, 50]]]}).encode()
    third = predict(stack, erin, strokes, "application/json")
    # no consent: held, never pending, never in a batch
    status, _, body = feedback(stack, erin, first["id"], "y", consent=False)
    assert status == 201, body
    refused = json.loads(body)
    assert refused["held"] and refused["consent"] is False
    # with consent (a confirmation: never suspicious), pending, then claimed into a batch
    status, _, body = feedback(stack, erin, third["id"], third["latex"], consent=True)
    assert status == 201, body
    trained = json.loads(body)
    assert not trained["held"]
    manifest = FeedbackBatches(stack.s3, stack.bucket).claim(threshold=1)
    assert manifest is not None
    claimed = {e["id"] for e in manifest["items"]}
    assert trained["id"] in claimed and refused["id"] not in claimed
    # after the claim: one more correction, pending
    status, _, body = feedback(stack, erin, second["id"], "x", consent=True)
    assert status == 201, body
    later = json.loads(body)

    status, _, body = call("DELETE", f"{stack.api}/me", headers=bearer(erin))
    assert status == 200, body
    result = json.loads(body)
    assert result["erased"]["predictions"] == 3
    assert result["erased"]["inputs"] == 3
    assert result["erased"]["feedback"] == 2  # the held one and the later pending one
    assert result["kept_in_training"] == 1
    for prefix in (f"predictions/{sub}/", f"inputs/{sub}/", f"uploads/{sub}/"):
        assert _versions(stack, prefix) == [], prefix  # every version, not just hidden
    tag = owner_tag(sub)
    assert _versions(stack, f"{PENDING}{tag}") == [] and _versions(stack, f"{HELD}{tag}") == []
    store = FeedbackStore(stack.s3, stack.bucket)
    assert store.find(refused["id"]) is None and store.find(later["id"]) is None
    assert _versions(stack, f"{USED}{trained['id']}.json")  # used in training: it stays
    assert store.find(trained["id"]) is not None
    status, _, body = call("GET", f"{stack.api}/predictions", headers=bearer(erin))
    assert status == 200 and json.loads(body)["items"] == []
    assert call("GET", f"{stack.api}/predictions/{third['id']}", headers=bearer(erin))[0] == 404
    # other users are untouched
    status, _, body = call("GET", f"{stack.api}/predictions", headers=bearer(stack.token("alice")))
    assert status == 200 and json.loads(body)["items"]
    # a second erasure finds nothing
    status, _, body = call("DELETE", f"{stack.api}/me", headers=bearer(erin))
    assert status == 200 and sum(json.loads(body)["erased"].values()) == 0
    assert call("DELETE", f"{stack.api}/me")[0] == 401


# --- faults ------------------------------------------------------------------------------


def test_model_bucket_unavailable_on_a_cold_start_is_503_with_a_reason(stack):
    models = stack.info["resources"]["ModelBucketName"]
    alice = stack.token("alice")
    stack.proxy.fail("GET", rf"^/{models}(/|\?|$)", 503, "ServiceUnavailable")
    try:
        stack.recycle()
        status, _, body = call(
            "POST",
            f"{stack.api}/predictions",
            IMAGE.read_bytes(),
            {"content-type": "image/png", **bearer(alice)},
        )
        assert status == 503, body
        message = json.loads(body)["message"]
        assert "cannot be served" in message and "Traceback" not in message
        assert stack.proxy.injected > 0
        assert call("GET", f"{stack.api}/health")[0] == 200  # the function itself is alive
    finally:
        stack.proxy.heal()
    stack.recycle()  # a new container fetches the model again
    assert predict(stack, alice)["model_version"] == stack.info["model"]["version"]


def test_an_s3_error_mid_write_is_a_500_without_internals_and_no_half_record(stack):
    alice = stack.token("alice")
    predict(stack, alice)  # warm
    before = {r["id"] for r in _history(stack, alice)}
    stack.proxy.fail("PUT", rf"^/{stack.bucket}/predictions/")
    try:
        status, headers, body = call(
            "POST",
            f"{stack.api}/predictions",
            IMAGE.read_bytes(),
            {"content-type": "image/png", **bearer(alice)},
        )
    finally:
        stack.proxy.heal()
    assert status == 500
    assert json.loads(body) == {"message": "Internal Server Error"}  # API Gateway's words
    assert headers["content-type"].startswith("application/json")
    assert {r["id"] for r in _history(stack, alice)} == before  # no record was half-made
    assert predict(stack, alice)  # and it keeps serving


def _history(stack: Running, token: str) -> list[dict]:
    status, _, body = call("GET", f"{stack.api}/predictions?limit=100", headers=bearer(token))
    assert status == 200, body
    return json.loads(body)["items"]


# --- load ----------------------------------------------------------------------------------


def test_load_16_clients_no_5xx_every_correction_stored_metrics_agree(stack):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "local_stack.loadtest",
            "--clients",
            str(LOAD_CLIENTS),
            "--seconds",
            str(LOAD_SECONDS),
            "--state-dir",
            str(stack.state_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=LOAD_SECONDS + 300,
    )
    assert proc.stdout, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    print(json.dumps(report, indent=2))  # the numbers, in the test's output
    assert report["checks"] == "passed", report["checks"]
    assert proc.returncode == 0
    assert report["server_errors_5xx"] == 0 and report["connection_errors"] == 0
    assert report["throttled_429"] > 0  # /recognize's 2 per second is exceeded by design
    assert report["by_operation"]["recognize"]["statuses"].get("429", 0) > 0
    assert report["by_operation"]["feedback"]["statuses"].get("201", 0) > 0
    assert report["p95_ms"] is not None and report["throughput_rps"] > 0
    # and afterwards the stack still answers
    assert call("GET", f"{stack.api}/health")[0] == 200
