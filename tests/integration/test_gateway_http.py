"""The gateway's HTTP: malformed requests get 400 as RFC 9112 says, a chunked body is the
request's body (never a second request), and the listen backlog holds a burst.

Raw sockets, so the test sends exactly the bytes an attacker would; the gateway's functions
are replaced by a recorder (conftest.capturing_gateway), so what reached a function is known.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def exchange(url: str, raw: bytes) -> bytes:
    """Send `raw` on one connection and read until the server closes it (every request
    here ends with `Connection: close` or is refused with a close)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=300) as s:
        s.sendall(raw)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    return received


def statuses(received: bytes) -> list[int]:
    """The status code of every response in what the server sent."""
    return [
        int(line.split()[1])
        for line in received.split(b"\r\n")
        if line.startswith(b"HTTP/1.1 ") or line.startswith(b"HTTP/1.0 ")
    ]


GET_CONFIG = b"GET /config.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
HEAD = b"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"


MALFORMED = [
    ("nul-escaped", b"GET /%00 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    ("nul-raw", b"GET /a\x00b HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    (
        "chunked-and-length",
        b"POST /recognize HTTP/1.1\r\n" + HEAD + b"Content-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ),
    (
        "length-and-chunked",
        b"POST /recognize HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n"
        b"Content-Length: 4\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ),
    (
        "two-lengths-shorter-first",
        b"POST /recognize HTTP/1.1\r\n" + HEAD + b"Content-Length: 2\r\n"
        b"Content-Length: 30\r\n\r\n{}GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    ),
    (
        "two-equal-lengths",
        b"POST /recognize HTTP/1.1\r\n" + HEAD + b"Content-Length: 2\r\n"
        b"Content-Length: 2\r\n\r\n{}",
    ),
    (
        "length-list",
        b"POST /recognize HTTP/1.1\r\n" + HEAD + b"Content-Length: 2, 2\r\n\r\n{}",
    ),
    (
        "length-not-a-number",
        b"POST /recognize HTTP/1.1\r\n" + HEAD + b"Content-Length: -1\r\n\r\n",
    ),
    (
        "chunked-not-last",
        b"POST /recognize HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked, identity\r\n\r\n",
    ),
    ("two-hosts", b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
]


@pytest.mark.parametrize("raw", [pytest.param(raw, id=case) for case, raw in MALFORMED])
def test_malformed_requests_get_400_and_reach_no_function(capturing_gateway, raw):
    url, _, seen = capturing_gateway
    received = exchange(url, raw)
    assert statuses(received) == [400], received[:300]
    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["message"].startswith("Bad Request")
    assert seen == []
    # and the gateway goes on serving
    ok = exchange(url, GET_CONFIG)
    assert statuses(ok) == [200]


def test_a_chunked_body_is_the_requests_body_not_a_second_request(capturing_gateway):
    url, _, seen = capturing_gateway
    smuggled = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    body = b'{"strokes": []}' + smuggled
    raw = (
        b"POST /recognize HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    )
    received = exchange(url, raw)
    assert statuses(received) == [200]
    assert [e["routeKey"] for e in seen] == ["POST /recognize"]
    assert seen[0]["body"] == body.decode()


def test_a_chunked_body_over_the_limit_is_413(capturing_gateway):
    url, _, seen = capturing_gateway
    chunk = b"x" * (1 << 20)
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=300) as s:
        s.sendall(b"POST /recognize HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        received = b""
        try:
            for _ in range(11):
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway answered and closed before the rest was sent
        while chunk := s.recv(65536):
            received += chunk
    assert statuses(received) == [413]
    assert seen == []


def test_the_listen_backlog_holds_a_burst(capturing_gateway):
    url, _, _ = capturing_gateway
    port = urlsplit(url).port
    if shutil.which("ss"):  # the kernel's own view of the listening socket: Send-Q
        line = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert int(line[2]) >= 128, line

    def one(_):
        return statuses(exchange(url, GET_CONFIG))

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(one, range(256)))
    assert answers == [[200]] * 256
