"""What stands between the AWS emulator (moto's WSGI app) and anyone who can reach its port.

moto answers anyone: any Origin with CORS allowing every method, any credentials, unsigned
requests, tampered presigned URLs. Here, in front of it, as AWS would:

- A request with an `Origin` header (a browser's, from whatever page) gets 403, and no
  response carries moto's CORS headers: no web page can read from the emulator. The one
  exception is S3's own: a bucket's CORS rules, as the emulator holds them (put there from
  template.yaml's `CorsConfiguration`: the web UI's origins), let those origins send a
  presigned request with a rule's method (the UI's presigned photo upload) and its
  preflight, answered with the headers S3 sends.
- Every request is signed (AWS Signature Version 4, in the Authorization header or a
  presigned URL's query) with the stack's own generated access key
  (`Credentials`, `<state>/secrets/aws-credentials`); anything else gets 403 as S3 says it:
  `AccessDenied`, `InvalidAccessKeyId`, `SignatureDoesNotMatch`, an expired URL. The
  signature is recomputed with botocore's own signers (canonical request, string to sign,
  derived key), so a presigned URL whose key or query was rewritten fails.
- moto's own control API (`/moto-api/...`: reset, seed, its dashboard) is not served.
- S3 object writes and deletes are serialised (`write_lock`): moto checks `If-None-Match` /
  `If-Match` and then writes, as two steps; under the lock check-then-write is atomic, as
  it is in S3, so exactly one `PutObject(IfNoneMatch="*")` wins.
"""

from __future__ import annotations

import configparser
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import re
import secrets
import string
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials

from local_stack.durable import write_file

log = logging.getLogger(__name__)

PROFILE = "inktex-local"  # the profile name in the credentials file (AWS's INI format)
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Credentials:
    """The stack's own AWS keys: generated once per state folder, kept in an AWS shared
    credentials file (profile `inktex-local`) that only its owner can read."""

    access_key_id: str
    secret_access_key: str

    @staticmethod
    def path(state_dir: Path) -> Path:
        return Path(state_dir) / "secrets" / "aws-credentials"

    @classmethod
    def load(cls, state_dir: Path, create: bool = True) -> Credentials:
        path = cls.path(state_dir)
        if not path.is_file() and create:
            path.parent.mkdir(parents=True, exist_ok=True)
            alphabet = string.ascii_uppercase + string.digits
            key_id = "LKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
            parser = configparser.ConfigParser()
            parser[PROFILE] = {
                "aws_access_key_id": key_id,
                "aws_secret_access_key": secrets.token_urlsafe(30),
            }
            text = io.StringIO()
            parser.write(text)
            write_file(path, text.getvalue().encode(), mode=0o600)  # two starts: one wins
        parser = configparser.ConfigParser()
        parser.read(path)
        section = parser[PROFILE]
        return cls(section["aws_access_key_id"], section["aws_secret_access_key"])

    def as_kwargs(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }

    def as_env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }


class Refused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


write_lock = threading.RLock()


class Guard:
    """WSGI middleware: refuses what AWS would refuse, then calls moto's app. `after(service,
    environ, body, answer, headers)` is called under the write lock with each write moto
    acknowledged (S3 object writes, SSM parameter changes, EventBridge PutEvents), before
    the answer leaves: the durable journal (journal.py) hooks in there."""

    def __init__(
        self,
        app: Callable,
        credentials: Credentials,
        after: Callable | None = None,
        cors: Callable[[str], list[dict]] | None = None,
    ):
        self.app, self.credentials, self.after = app, credentials, after
        # bucket name -> its CORS rules, as GetBucketCors gives them (what moto holds)
        self.cors = cors or (lambda bucket: [])

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        raw_uri = environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/"
        service = "s3"
        allowed: dict[str, str] = {}
        try:
            if environ.get("HTTP_ORIGIN") is not None:
                allowed = self._cors(method, raw_uri, environ)
                if method == "OPTIONS":  # a preflight S3's CORS rules allow
                    start_response("200 OK", [*allowed.items(), ("Content-Length", "0")])
                    return [b""]
            if raw_uri.startswith("/moto-api"):
                raise Refused("AccessDenied", "the emulator's control API is not served")
            body = _read_body(environ)
            service = self.verify(method, raw_uri, _headers(environ), body)
        except Refused as exc:
            log.info("403 %s %s: %s", method, raw_uri[:120], exc.message)
            return _refuse(start_response, service, exc)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        if allowed:
            outer = start_response

            def start_response(status, headers, exc_info=None):
                return outer(status, [*headers, *allowed.items()], exc_info)

        if not _writes(service, method, environ):
            return self._call(environ, start_response)
        with write_lock:
            captured: dict = {}

            def capture(status, headers, exc_info=None):
                captured["status"], captured["headers"] = status, headers
                return lambda data: None  # the answer is sent below, once recorded

            chunks = list(self._call(environ, capture))
            if self.after is not None and captured["status"].startswith("2"):
                self.after(service, environ, body, b"".join(chunks), captured["headers"])
        start_response(captured["status"], captured["headers"])
        return chunks

    def _cors(self, method: str, raw_uri: str, environ: dict) -> dict[str, str]:
        """The CORS headers for a browser's request that a bucket's CORS rules allow (a
        presigned object request, or its preflight); raises Refused for any other."""
        origin = environ["HTTP_ORIGIN"]
        path, _, query = raw_uri.partition("?")
        bucket, _, key = unquote(path.lstrip("/")).partition("/")
        wanted = (
            environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD", "") if method == "OPTIONS" else method
        )
        asked = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
        headers = {h.strip().lower() for h in asked.split(",") if h.strip()}
        presigned = method == "OPTIONS" or "X-Amz-Signature=" in query
        for rule in self.cors(bucket) if key and presigned else []:
            origins = rule.get("AllowedOrigins") or []
            allowed_headers = {h.lower() for h in rule.get("AllowedHeaders") or []}
            if (
                (origin in origins or "*" in origins)
                and wanted in (rule.get("AllowedMethods") or [])
                and ("*" in allowed_headers or headers <= allowed_headers)
            ):
                return _cors_headers(rule, origin, headers if method == "OPTIONS" else set())
        raise Refused("AccessDenied", "browser requests are refused (Origin present)")

    def _call(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """moto's answer, without the CORS headers its Flask apps add."""

        def without_cors(status, headers, exc_info=None):
            kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
            return start_response(status, kept, exc_info)

        return self.app(environ, without_cors)

    # --- Signature Version 4 ----------------------------------------------------------------

    def verify(self, method: str, raw_uri: str, headers: dict[str, str], body: bytes) -> str:
        """The signing service's name when the request is signed with the stack's key;
        raises Refused otherwise."""
        path, _, query = raw_uri.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        presigned = "X-Amz-Signature" in params
        if presigned:
            credential = params.get("X-Amz-Credential", "")
            signed = params.get("X-Amz-SignedHeaders", "")
            signature = params["X-Amz-Signature"]
            stamp = params.get("X-Amz-Date", "")
        else:
            match = _AUTH.match(headers.get("authorization", "").strip())
            if match is None:
                raise Refused("AccessDenied", "the request is not signed (Signature Version 4)")
            credential, signed, signature = match["credential"], match["signed"], match["signature"]
            stamp = headers.get("x-amz-date", "")
        try:
            key_id, day, region, service, terminal = credential.split("/")
        except ValueError:
            raise Refused("AuthorizationHeaderMalformed", "a malformed credential") from None
        if not hmac.compare_digest(key_id, self.credentials.access_key_id):
            raise Refused(
                "InvalidAccessKeyId",
                "the access key is not this stack's (its keys: `inktex info`, aws_credentials)",
            )
        if terminal != "aws4_request" or not stamp.startswith(day):
            raise Refused("AuthorizationHeaderMalformed", "a malformed credential scope")
        if presigned:
            _check_not_expired(stamp, params.get("X-Amz-Expires", "0"))
        names = signed.split(";")
        request = AWSRequest(
            method=method,
            url=f"http://{headers.get('host', '')}{_without_signature(path, query)}",
            headers={name: headers[name] for name in names if name in headers},
            data=body,
        )
        request.context["timestamp"] = stamp
        creds = BotocoreCredentials(
            self.credentials.access_key_id, self.credentials.secret_access_key
        )
        if presigned:
            signer: SigV4Auth = S3SigV4QueryAuth(creds, service, region)
        elif service == "s3":
            signer = S3SigV4Auth(creds, service, region)
            declared = headers.get("x-amz-content-sha256", "")
            if _HEX64.fullmatch(declared) and declared != hashlib.sha256(body).hexdigest():
                raise Refused("XAmzContentSHA256Mismatch", "the body is not the one signed")
        else:
            signer = SigV4Auth(creds, service, region)
        if any(name not in headers for name in names):
            raise Refused("SignatureDoesNotMatch", "a signed header is missing")
        expected = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request
        )
        if not hmac.compare_digest(expected, signature):
            raise Refused(
                "SignatureDoesNotMatch",
                "the request signature we calculated does not match the signature you provided",
            )
        return service


def _cors_headers(rule: dict, origin: str, asked: set[str]) -> dict[str, str]:
    """What S3 answers a request that CORS rule `rule` allows: the origin (`*` for a rule
    of any origin, without credentials then), the rule's methods, exposed headers and max
    age; to a preflight, the headers it asked for."""
    anyone = origin not in (rule.get("AllowedOrigins") or [])
    answer = {
        "Access-Control-Allow-Origin": "*" if anyone else origin,
        "Access-Control-Allow-Methods": ", ".join(rule["AllowedMethods"]),
        "Vary": "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    }
    if not anyone:
        answer["Access-Control-Allow-Credentials"] = "true"
    if asked:
        answer["Access-Control-Allow-Headers"] = ", ".join(sorted(asked))
    if rule.get("ExposeHeaders"):
        answer["Access-Control-Expose-Headers"] = ", ".join(rule["ExposeHeaders"])
    if rule.get("MaxAgeSeconds") is not None:
        answer["Access-Control-Max-Age"] = str(rule["MaxAgeSeconds"])
    return answer


def _writes(service: str, method: str, environ: dict) -> bool:
    """Whether a request may change state that must be serialised and recorded."""
    if service == "s3":
        return method not in ("GET", "HEAD")
    target = environ.get("HTTP_X_AMZ_TARGET", "").rsplit(".", 1)[-1]
    if service == "ssm":
        return target in SSM_WRITES
    return service == "events" and target == "PutEvents"  # journaled until delivered


SSM_WRITES = {"PutParameter", "DeleteParameter", "DeleteParameters", "LabelParameterVersion"}


def _without_signature(path: str, query: str) -> str:
    kept = [p for p in query.split("&") if p and not p.startswith("X-Amz-Signature=")]
    return path + ("?" + "&".join(kept) if kept else "")


def _check_not_expired(stamp: str, expires: str) -> None:
    try:
        signed_at = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        seconds = int(expires)
    except ValueError:
        raise Refused("AuthorizationQueryParametersError", "a malformed presigned URL") from None
    if dt.datetime.now(dt.UTC) > signed_at + dt.timedelta(seconds=seconds):
        raise Refused("AccessDenied", "Request has expired")


def _headers(environ: dict) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def _read_body(environ: dict) -> bytes:
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        return stream.read()
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return stream.read(length) if length else b""


def _refuse(start_response: Callable, service: str, exc: Refused) -> list[bytes]:
    if service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{exc.code}</Code><Message>{exc.message}</Message></Error>"
        ).encode()
        kind = "application/xml"
    else:
        body = json.dumps({"__type": exc.code, "message": exc.message}).encode()
        kind = "application/x-amz-json-1.1"
    start_response("403 Forbidden", [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]
