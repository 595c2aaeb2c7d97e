"""An API Gateway HTTP API (payload format 2.0) on one port, plus what the browser needs.

Routes, the JWT authorizer, CORS and throttling come from template.yaml (`HttpApi`). A
request that matches a route becomes the same event API Gateway sends (the shape of
`sam local generate-event apigateway http-api-proxy`), goes to the route's function, and the
function's answer is mapped back as API Gateway maps it. What API Gateway does before a
function runs is done here too: 401 for a missing or bad token (signature, expiry, issuer,
audience), 429 past a route's rate, CORS preflights.

The HTTP is werkzeug's threaded server (a listen backlog of 128, one connection per request,
chunked bodies de-chunked), with the framing RFC 9112 says a server must refuse (a NUL in
the target, a body framed by both Transfer-Encoding and Content-Length, two lengths)
answered 400 before any route sees it (`framing_problem`).

On the same port, for the browser: the web UI's static files (web/dist, else web/, else a
placeholder page), `/config.json` (the API's URL and the sign-in settings) unless the UI
ships one, and the local sign-in that stands in for Cognito's hosted UI (`/oauth2/authorize`,
`/login`, `/oauth2/token`, `/logout`, `/.well-known/jwks.json`).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import mimetypes
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

from werkzeug.datastructures import Headers
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from local_stack.template import HttpApi, Route, Throttle
from local_stack.tokens import Issuer, TokenError, gateway_claims

log = logging.getLogger(__name__)

# API Gateway's HTTP API quota: a larger payload is refused before any function runs.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
# The web UI's Content-Security-Policy: its HTML pages carry it in a <meta> tag (no inline
# script or style), and the gateway sends that same policy as a header, as CloudFront does.
_CSP_META = re.compile(
    rb'<meta\s+http-equiv="Content-Security-Policy"\s+content="([^"]+)"', re.IGNORECASE
)

_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|xml|javascript|x-www-form-urlencoded|[^;]*\+json|[^;]*\+xml))"
)


class TokenBucket:
    """API Gateway's throttle: `burst` requests at once, refilled at `rate` per second."""

    def __init__(self, throttle: Throttle):
        self.rate, self.capacity = throttle.rate, float(throttle.burst)
        self.tokens, self.stamp = self.capacity, time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False

    def retry_after(self) -> int:
        """Whole seconds until the next request would pass (Retry-After)."""
        with self.lock:
            return max(1, math.ceil((1 - self.tokens) / self.rate)) if self.rate > 0 else 60

    def refusal(self, route_key: str) -> str:
        """A 429's reason: the route's limits and when to retry."""
        burst = int(self.capacity)
        return (
            f"Too Many Requests: {route_key} allows {self.rate:g} requests a second "
            f"(bursts of up to {burst}); retry after {self.retry_after()} s"
        )


@dataclass
class CompiledRoute:
    route: Route
    pattern: re.Pattern
    names: list[str]
    specificity: tuple  # larger wins: static segments, then fewer greedy parameters


def compile_route(route: Route) -> CompiledRoute:
    names, parts, static = [], [], 0
    greedy = 0
    for segment in route.path.strip("/").split("/") if route.path != "/" else []:
        m = re.fullmatch(r"\{([^}+]+)(\+?)\}", segment)
        if m:
            names.append(m.group(1))
            greedy += bool(m.group(2))
            parts.append(
                f"(?P<p{len(names) - 1}>.+)" if m.group(2) else f"(?P<p{len(names) - 1}>[^/]+)"
            )
        else:
            static += 1
            parts.append(re.escape(segment))
    pattern = re.compile("^/" + "/".join(parts) + "$")
    return CompiledRoute(route, pattern, names, (static, -greedy, route.method != "ANY"))


@dataclass
class SignInCode:
    username: str
    groups: list[str]
    redirect_uri: str
    expires: float


@dataclass
class Gateway:
    """Everything the request handler needs; built by the stack."""

    api: HttpApi
    invoke: Callable[[str, dict], dict]  # (function logical id, event) -> result
    issuer: Issuer
    account_id: str
    region: str
    callback_urls: list[str]
    web_root: Path | None
    config: dict  # what /config.json answers when the web UI ships none
    api_id: str = "local"
    routes: list[CompiledRoute] = field(default_factory=list)
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    codes: dict[str, SignInCode] = field(default_factory=dict)
    refresh: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    last_event: dict | None = None  # the latest event sent to a function (tests compare it)

    def __post_init__(self):
        self.routes = sorted(
            (compile_route(r) for r in self.api.routes),
            key=lambda c: c.specificity,
            reverse=True,
        )
        for r in self.api.routes:
            throttle = self.api.throttle_for(r.key)
            if throttle is not None:
                self.buckets[r.key] = TokenBucket(throttle)

    def match(self, method: str, path: str) -> tuple[Route, dict] | None:
        for c in self.routes:
            if c.route.method not in (method, "ANY"):
                continue
            m = c.pattern.match(path)
            if m:
                params = {name: unquote(m.group(f"p{i}")) for i, name in enumerate(c.names)}
                return c.route, params
        return None

    def path_exists(self, path: str) -> bool:
        return any(c.pattern.match(path) for c in self.routes)

    def authorize(self, route: Route, headers: dict[str, str]) -> dict | None:
        """The claims for a route with an authorizer; raises TokenError for 401."""
        authorizer = self.api.authorizers[route.authorizer]
        header = authorizer.identity_source.rsplit(".", 1)[-1].lower()
        value = headers.get(header, "").strip()
        if not value:
            raise TokenError("no bearer token")
        token = value[7:].strip() if value.lower().startswith("bearer ") else value
        return self.issuer.verify(token, authorizer.issuer, authorizer.audience)

    def build_event(
        self,
        route: Route,
        params: dict,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: dict[str, str],
        body: bytes,
        source_ip: str,
        claims: dict | None,
    ) -> dict:
        now = datetime.now(UTC)
        host = headers.get("host", "127.0.0.1")
        event: dict = {
            "version": "2.0",
            "routeKey": route.key,
            "rawPath": raw_path,
            "rawQueryString": raw_query,
        }
        cookies = [c.strip() for c in headers.get("cookie", "").split(";") if c.strip()]
        if cookies:
            event["cookies"] = cookies
        event["headers"] = {k: v for k, v in headers.items() if k != "cookie"}
        if raw_query:
            query: dict[str, list[str]] = {}
            for k, v in parse_qsl(raw_query, keep_blank_values=True):
                query.setdefault(k, []).append(v)
            event["queryStringParameters"] = {k: ",".join(v) for k, v in query.items()}
        context = {
            "accountId": self.account_id,
            "apiId": self.api_id,
        }
        if claims is not None:
            scopes = claims.get("scope")
            context["authorizer"] = {
                "jwt": {
                    "claims": gateway_claims(claims),
                    "scopes": scopes.split() if isinstance(scopes, str) else None,
                }
            }
        context.update(
            {
                "domainName": host,
                "domainPrefix": host.split(".")[0],
                "http": {
                    "method": method,
                    "path": raw_path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source_ip,
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": base64.b32encode(uuid.uuid4().bytes[:10]).decode().rstrip("="),
                "routeKey": route.key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            }
        )
        event["requestContext"] = context
        if body:
            content_type = headers.get("content-type", "")
            if _TEXT_TYPES.match(content_type):
                try:
                    event["body"], event["isBase64Encoded"] = body.decode("utf-8"), False
                except UnicodeDecodeError:
                    event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
            else:
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        if params:
            event["pathParameters"] = params
        event.setdefault("isBase64Encoded", False)
        return event

    def cors_headers(self, origin: str | None, preflight: bool) -> dict[str, str]:
        cors = self.api.cors
        if cors is None or not origin:
            return {}
        if origin not in cors.allow_origins and "*" not in cors.allow_origins:
            return {}
        headers = {"access-control-allow-origin": origin if "*" not in cors.allow_origins else "*"}
        if preflight:
            headers["access-control-allow-methods"] = ",".join(cors.allow_methods)
            headers["access-control-allow-headers"] = ",".join(cors.allow_headers)
            if cors.max_age is not None:
                headers["access-control-max-age"] = str(cors.max_age)
        return headers

    def redirect_allowed(self, uri: str, base: str) -> bool:
        return uri in self.callback_urls or uri.startswith(base + "/")

    def serve(self, host: str, port: int) -> ThreadedWSGIServer:
        """A threaded werkzeug server for this gateway (listen backlog 128); the caller runs
        `serve_forever` and later `shutdown` and `server_close`."""
        try:
            server = make_server(host, port, self.wsgi, threaded=True, request_handler=_Strict)
        except SystemExit as exc:  # werkzeug exits when it cannot bind; a library must not
            raise OSError(f"cannot listen on {host}:{port}") from exc
        return server  # type: ignore[return-value]

    def wsgi(self, environ, start_response):
        """The WSGI application: one request in, one response out."""
        exchange = _Exchange(self, Request(environ))
        exchange.dispatch()
        return exchange.response(environ, start_response)


def _json_bytes(payload) -> bytes:
    return json.dumps(payload).encode()


def framing_problem(target: str, headers) -> tuple[int, str] | None:
    """Why a request cannot be framed or routed safely (RFC 9112), or None.

    The request smuggling vectors are refused outright rather than resolved: a body framed
    both by Transfer-Encoding and by Content-Length, two lengths, a length that is not a
    number, a transfer coding other than chunked. A NUL (raw or percent-encoded) or another
    control character in the target is refused too: no route or file name holds one."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target) or "%00" in target:
        return 400, "the request target holds a control character"
    lengths = headers.get_all("content-length") or []
    encodings = headers.get_all("transfer-encoding") or []
    if len(headers.get_all("host") or []) > 1:
        return 400, "more than one Host header"
    if len(lengths) > 1 or any("," in v for v in lengths):
        return 400, "more than one Content-Length"
    if lengths and not lengths[0].strip().isdigit():
        return 400, f"a bad Content-Length: {lengths[0][:40]!r}"
    if encodings and lengths:
        return 400, "both Transfer-Encoding and Content-Length: the body's length is ambiguous"
    if encodings:
        codings = [c.strip().lower() for v in encodings for c in v.split(",") if c.strip()]
        if not codings or codings[-1] != "chunked":
            return 400, "Transfer-Encoding must end with chunked"
        if codings != ["chunked"]:
            return 501, f"Transfer-Encoding {', '.join(codings)} is not supported"
    return None


class _Strict(WSGIRequestHandler):
    """werkzeug's request handler, refusing what RFC 9112 says a server must not guess at.
    werkzeug parses the request line and headers (http.server) and de-chunks bodies; what it
    would let through and this refuses is in `framing_problem`."""

    timeout = 60  # seconds a client may take to send its request (no slowloris)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        problem = framing_problem(self.path, self.headers)
        if (
            problem is None
            and self.request_version == "HTTP/1.0"
            and "transfer-encoding" in self.headers
        ):
            problem = (400, "Transfer-Encoding in an HTTP/1.0 request")
        if problem is None:
            return True
        status, reason = problem
        log.info("%s %r refused: %s", status, self.path[:80], reason)
        body = _json_bytes({"message": f"Bad Request: {reason}" if status == 400 else reason})
        self.close_connection = True
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(body)
        return False

    def log_request(self, code="-", size="-") -> None:  # the functions log their own requests
        log.debug("%s %s %s", self.address_string(), self.requestline, code)


class _Exchange:
    """One request and the response being built for it."""

    def __init__(self, gateway: Gateway, request: Request):
        self.gateway, self.request = gateway, request
        self.command = request.method
        self.client_ip = request.remote_addr or "127.0.0.1"
        self.server_port = str(request.environ.get("SERVER_PORT", ""))
        self.response = Response(status=500)

    @property
    def base_url(self) -> str:
        host = self.request.headers.get("host")
        if not host:
            host = f"{self.request.environ.get('SERVER_NAME')}:{self.server_port}"
        return f"http://{host}"

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict | None = None,
        cookies: list[str] | None = None,
    ) -> None:
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        headers.setdefault("content-type", "application/json")
        headers["content-length"] = str(len(body))
        out = Headers(list(headers.items()))
        for cookie in cookies or []:
            out.add("set-cookie", cookie)
        self.response = Response(body, status=status, headers=out)

    def _message(self, status: int, message: str, extra: dict | None = None) -> None:
        self._send(status, _json_bytes({"message": message}), extra)

    def _read_body(self) -> bytes | None:
        """The body (de-chunked by werkzeug), or None when it is over the API's limit."""
        environ = self.request.environ
        stream = environ["wsgi.input"]
        declared = self.request.content_length
        if declared is not None:
            if declared > MAX_PAYLOAD_BYTES:  # refused, never held in memory
                self._discard(declared)
                return None
            return stream.read(declared) if declared else b""
        if not environ.get("wsgi.input_terminated"):
            return b""  # neither a length nor chunked: no body (RFC 9112, 6.3)
        chunks, size = [], 0
        while chunk := stream.read(1 << 16):
            size += len(chunk)
            if size > MAX_PAYLOAD_BYTES:
                chunks.clear()
                if size > 8 * MAX_PAYLOAD_BYTES:  # past this, the connection just closes
                    return None
            else:
                chunks.append(chunk)
        return b"".join(chunks) if size <= MAX_PAYLOAD_BYTES else None

    def _discard(self, length: int) -> None:
        """Read a refused body in chunks (so the client sees the answer, not a reset),
        up to a bound: past it, the connection is simply closed after the answer."""
        stream = self.request.environ["wsgi.input"]
        left = length if length <= 8 * MAX_PAYLOAD_BYTES else 0
        while left > 0:
            chunk = stream.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)

    def dispatch(self) -> None:
        environ = self.request.environ
        split = urlsplit(environ.get("REQUEST_URI") or "/")
        path, raw_query = split.path or "/", split.query
        body = self._read_body()
        if body is None:
            declared = self.request.content_length
            size = f"{declared} bytes" if declared is not None else "larger"
            return self._message(
                413,
                f"Request Entity Too Large: the body is {size}; the API's limit is "
                f"{MAX_PAYLOAD_BYTES}",
                {"connection": "close"},
            )
        headers: dict[str, str] = {}
        for k, v in self.request.headers.items():
            k = k.lower()
            headers[k] = f"{headers[k]},{v}" if k in headers and k != "cookie" else v
        if (self.command, path) in _SIGN_IN:
            return _SIGN_IN[self.command, path](self, raw_query, body, headers)
        self._api_or_static(path, raw_query, headers, body)

    def _api_or_static(self, path, raw_query, headers, body) -> None:
        g = self.gateway
        method = self.command
        origin = headers.get("origin")
        found = g.match(method, path)
        if found is None and method == "OPTIONS" and g.api.cors and g.path_exists(path):
            return self._send(204, headers=g.cors_headers(origin, preflight=True))
        if found is None:
            if method in ("GET", "HEAD"):
                return self._static(path)
            return self._message(404, "Not Found")
        route, params = found
        cors = g.cors_headers(origin, preflight=False)
        bucket = g.buckets.get(route.key)
        if bucket is not None and not bucket.take():
            wait = {"retry-after": str(bucket.retry_after())}
            return self._message(429, bucket.refusal(route.key), {**cors, **wait})
        claims = None
        if route.authorizer:
            try:
                claims = g.authorize(route, headers)
            except TokenError as exc:
                log.info("401 %s %s: %s", method, path, exc)
                return self._message(401, "Unauthorized", {**cors, "www-authenticate": "Bearer"})
        headers.setdefault("x-forwarded-for", self.client_ip)
        headers.setdefault("x-forwarded-proto", "http")
        headers.setdefault("x-forwarded-port", self.server_port)
        headers.setdefault(
            "x-amzn-trace-id", f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)}"
        )
        event = g.build_event(
            route, params, method, path, raw_query, headers, body, self.client_ip, claims
        )
        g.last_event = event
        try:
            result = g.invoke(route.function, event)
        except Exception as exc:
            log.warning("%s failed: %s", route.function, exc)
            return self._message(500, "Internal Server Error", cors)
        self._function_response(result, cors)

    def _function_response(self, result, cors: dict) -> None:
        if not isinstance(result, dict) or "statusCode" not in result:
            # payload 2.0: anything without a statusCode is a 200 JSON body
            return self._send(200, _json_bytes(result), cors)
        body = result.get("body") or ""
        data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
        headers = {**{k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}}
        for k, values in (result.get("multiValueHeaders") or {}).items():
            headers[k.lower()] = ",".join(str(v) for v in values)
        headers = {**headers, **cors}
        self._send(int(result["statusCode"]), data, headers, result.get("cookies"))

    # --- the web UI -----------------------------------------------------------------------

    def _static(self, path: str) -> None:
        g = self.gateway
        root = g.web_root
        if path == "/config.json" and (root is None or not (root / "config.json").is_file()):
            return self._send(200, _json_bytes(g.config), {"cache-control": "no-store"})
        if root is None:
            if path in ("/", "/index.html", "/callback"):
                page = _PLACEHOLDER.replace("__CONFIG__", json.dumps(g.config))
                return self._send(200, page.encode(), {"content-type": "text/html; charset=utf-8"})
            return self._message(404, "Not Found")
        target = (root / unquote(path).lstrip("/")).resolve()
        if root.resolve() not in (target, *target.parents):
            return self._message(404, "Not Found")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file() and "." not in Path(path).name:
            target = root / "index.html"  # a single-page app's own routes (/callback, /history)
        if not target.is_file():
            return self._message(404, "Not Found")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
            kind += "; charset=utf-8"
        data = target.read_bytes()
        headers = {
            "content-type": kind,
            "cache-control": "no-cache",
            "x-content-type-options": "nosniff",
        }
        if kind.startswith("text/html") and (csp := _CSP_META.search(data)):
            headers["content-security-policy"] = html.unescape(csp.group(1).decode())
        self._send(200, data, headers)


# --- local sign-in: what Cognito's hosted UI does for the browser ---------------------------


def _authorize(h: _Exchange, raw_query: str, body: bytes, headers: dict) -> None:
    q = {k: v[0] for k, v in parse_qs(raw_query).items()}
    g = h.gateway
    if q.get("client_id") != g.issuer.audience:
        return h._message(400, "unknown client_id: use the app client of template.yaml")
    if q.get("response_type", "code") not in ("code", "token"):
        return h._message(400, "response_type must be code or token")
    if not g.redirect_allowed(q.get("redirect_uri", ""), h.base_url):
        return h._message(400, "redirect_uri is not one of the app client's callback URLs")
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in q.items()
        if k in ("client_id", "redirect_uri", "state", "response_type", "scope")
    )
    page = _SIGN_IN_PAGE.replace("__HIDDEN__", hidden)
    h._send(200, page.encode(), {"content-type": "text/html; charset=utf-8"})


def _login(h: _Exchange, raw_query: str, body: bytes, headers: dict) -> None:
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    g = h.gateway
    username = form.get("username", "").strip()
    redirect = form.get("redirect_uri", "")
    if not re.fullmatch(r"[A-Za-z0-9._@+-]{1,64}", username):
        return h._message(400, "a user name is 1-64 letters, digits or . _ @ + -")
    if form.get("client_id") != g.issuer.audience or not g.redirect_allowed(redirect, h.base_url):
        return h._message(400, "unknown client_id or redirect_uri")
    groups = ["operators"] if form.get("operator") else []
    state = {"state": form["state"]} if form.get("state") else {}
    if form.get("response_type") == "token":
        tokens = _tokens(g, username, groups)
        fragment = urlencode(
            {
                **{k: tokens[k] for k in ("id_token", "access_token")},
                "token_type": "Bearer",
                "expires_in": 3600,
                **state,
            }
        )
        return h._send(302, headers={"location": f"{redirect}#{fragment}"})
    code = secrets.token_urlsafe(24)
    g.codes[code] = SignInCode(username, groups, redirect, time.time() + 300)
    sep = "&" if "?" in redirect else "?"
    h._send(302, headers={"location": f"{redirect}{sep}{urlencode({'code': code, **state})}"})


def _tokens(g: Gateway, username: str, groups: list[str]) -> dict:
    refresh = secrets.token_urlsafe(32)
    g.refresh[refresh] = (username, groups)
    return {
        "id_token": g.issuer.id_token(username, groups=groups),
        "access_token": g.issuer.access_token(username, groups=groups),
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": 3600,
    }


def _token(h: _Exchange, raw_query: str, body: bytes, headers: dict) -> None:
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    g = h.gateway
    cors = g.cors_headers(headers.get("origin"), preflight=False)  # the UI's origin only
    grant = form.get("grant_type")
    if grant == "authorization_code":
        code = g.codes.pop(form.get("code", ""), None)
        if (
            code is None
            or code.expires < time.time()
            or code.redirect_uri != form.get("redirect_uri", code.redirect_uri)
        ):
            return h._send(400, _json_bytes({"error": "invalid_grant"}), cors)
        return h._send(200, _json_bytes(_tokens(g, code.username, code.groups)), cors)
    if grant == "refresh_token" and form.get("refresh_token") in g.refresh:
        username, groups = g.refresh[form["refresh_token"]]
        tokens = _tokens(g, username, groups)
        tokens.pop("refresh_token")
        return h._send(200, _json_bytes(tokens), cors)
    h._send(
        400,
        _json_bytes(
            {
                "error": "unsupported_grant_type"
                if grant not in ("authorization_code", "refresh_token")
                else "invalid_grant"
            }
        ),
        cors,
    )


def _logout(h: _Exchange, raw_query: str, body: bytes, headers: dict) -> None:
    q = {k: v[0] for k, v in parse_qs(raw_query).items()}
    target = q.get("logout_uri") or q.get("redirect_uri") or "/"
    if target != "/" and not h.gateway.redirect_allowed(target, h.base_url):
        return h._message(400, "logout_uri is not allowed")
    h._send(302, headers={"location": target})


def _jwks(h: _Exchange, raw_query: str, body: bytes, headers: dict) -> None:
    h._send(200, _json_bytes(h.gateway.issuer.jwks()))


# Cognito's hosted UI paths (its domain is this port locally).
_SIGN_IN = {
    ("GET", "/oauth2/authorize"): _authorize,
    ("GET", "/login"): _authorize,
    ("POST", "/login"): _login,
    ("POST", "/oauth2/token"): _token,
    ("GET", "/logout"): _logout,
    ("GET", "/.well-known/jwks.json"): _jwks,
}

# The app's mark as the tab's icon, inline: the page asks this server for nothing more (no
# /favicon.ico), whether or not a web UI is served beside it.
_ICON = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E"
    "%3Crect width='32' height='32' rx='8' fill='%233047c9'/%3E%3Cpath d='M8 22c3-1 4-12 7-12s1 "
    "9 4 9 3-6 5-7' fill='none' stroke='%23fff' stroke-width='2.4' stroke-linecap='round'/%3E"
    "%3C/svg%3E"
)

# The web UI's look (web/styles/app.css: colours, card, buttons, light and dark), kept small.
_SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · InkTeX (local)</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="__ICON__" type="image/svg+xml">
<style>
:root{--bg:#f4f6fb;--surface:#fff;--text:#1c2333;--muted:#556074;--border:#d9deea;
--accent:#3047c9;--accent-hover:#2438a8;--on-accent:#fff;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#11151f;--surface:#1a2030;--text:#e8ebf3;
--muted:#a4adc2;--border:#323b52;--accent:#8ea2ff;--accent-hover:#b0beff;--on-accent:#0c1330}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:grid;place-items:center;background:var(--bg);
color:var(--text);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{width:min(26rem,calc(100% - 2rem));margin:2rem 0;padding:1.5rem 1.5rem 1.75rem;
background:var(--surface);border:1px solid var(--border);border-radius:14px;
box-shadow:0 1px 2px rgb(20 30 60/6%),0 4px 16px rgb(20 30 60/6%)}
.brand{display:flex;align-items:center;gap:.55rem;font-weight:700;font-size:1.2rem;margin-bottom:1rem}
.brand svg{width:1.9rem;height:1.9rem;color:var(--accent)}.brand b{color:var(--accent)}
h1{font-size:1.35rem;margin:0 0 .5rem}.note{color:var(--muted);font-size:.9rem;margin:0 0 1rem}
label{display:block;font-weight:600;margin:1rem 0 .35rem}
input[type=text]{width:100%;padding:.6rem .7rem;font:inherit;color:var(--text);
background:var(--surface);border:1px solid var(--border);border-radius:10px}
.check{display:flex;gap:.5rem;align-items:center;font-weight:400;color:var(--muted)}
.check input{width:1.1rem;height:1.1rem;accent-color:var(--accent)}
button{margin-top:1.25rem;width:100%;min-height:2.6rem;font:inherit;font-weight:600;
color:var(--on-accent);background:var(--accent);border:1px solid var(--accent);
border-radius:10px;cursor:pointer}button:hover{background:var(--accent-hover)}
:focus-visible{outline:none;box-shadow:0 0 0 3px rgb(48 71 201/45%)}
</style></head><body><main>
<div class="brand"><svg viewBox="0 0 32 32" aria-hidden="true"><rect width="32" height="32"
 rx="8" fill="currentColor"/><path d="M8 22c3-1 4-12 7-12s1 9 4 9 3-6 5-7" fill="none"
 stroke="#fff" stroke-width="2.4" stroke-linecap="round"/></svg><span>Ink<b>TeX</b></span></div>
<h1>Sign in</h1>
<p class="note">Local development sign-in: it stands in for Cognito's hosted UI. Any user name
works; there is no password. Tokens are signed by this machine's development key.</p>
<form method="post" action="/login">__HIDDEN__
<label for="username">User name</label>
<input id="username" name="username" type="text" required autofocus autocomplete="username"
 pattern="[A-Za-z0-9._@+\\-]{1,64}">
<label class="check"><input type="checkbox" name="operator" value="1"> member of the operators
 group</label>
<button type="submit">Sign in</button></form></main></body></html>
""".replace("__ICON__", _ICON)

_PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>InkTeX (local stack)</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}
code,pre{background:#f4f4f4;padding:.1rem .3rem}pre{padding:.75rem;overflow:auto}</style>
</head><body><main><h1>InkTeX local stack</h1>
<p>The API is running. The web UI is not built yet (no <code>web/dist</code> or
<code>web/index.html</code>); this page stands in for it.</p>
<p><a id="signin" href="#">Sign in</a> (the local stand-in for Cognito's hosted UI)</p>
<pre id="token" hidden></pre>
<p>Try: <code>curl -s -X POST --data-binary @tests/fixtures/inkml/27_em_120.png
 -H 'content-type: image/png' <span class="api"></span>/recognize</code></p>
<p><a href="/openapi.json">openapi.json</a> &middot; <a href="/health">health</a> &middot;
<a href="/models">models</a></p></main>
<script>
const config = __CONFIG__;
for (const el of document.querySelectorAll('.api')) el.textContent = config.apiUrl;
const params = new URLSearchParams({client_id: config.userPoolClientId, response_type: 'code',
  scope: 'openid email profile', redirect_uri: config.redirectUri});
document.getElementById('signin').href = config.authUrl + '/oauth2/authorize?' + params;
const code = new URLSearchParams(location.search).get('code');
if (code) {
  fetch(config.authUrl + '/oauth2/token', {method: 'POST',
    headers: {'content-type': 'application/x-www-form-urlencoded'},
    body: new URLSearchParams({grant_type: 'authorization_code', code,
      client_id: config.userPoolClientId, redirect_uri: config.redirectUri})})
  .then(r => r.json()).then(t => { const el = document.getElementById('token');
    el.hidden = false; el.textContent = 'Signed in. ID token (Authorization: Bearer ...):\\n'
      + t.id_token; });
}
</script></body></html>
"""
