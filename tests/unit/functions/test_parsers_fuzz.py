"""No malformed input gets a 5xx (issue 19): every parser of client input, fuzzed.

The parsers (`functions.common.limits.parse_json`, `submissions.from_http` for each
envelope, `submissions.from_object` for drops) either return or raise InputError (a 4xx);
anything else would be a 500 or, for a drop, a retry loop. Then the handlers themselves, on
the bodies of issue 19 (100,000 `[`, strokes 5,000 levels deep, a multipart `strokes` part
that is not JSON) and on fuzzed bodies: every answer is under 500.
"""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lambda_testkit import call_api, load_event

from functions.common import limits, submissions
from inktex.errors import InputError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
CONTENT_TYPES = (
    "application/json",
    "application/vnd.inktex.strokes+json",
    "multipart/form-data; boundary=XyZ",
    "multipart/form-data",
    "application/inkml+xml",
    "image/png",
    None,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=30,
)


def depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


def nested_strokes(levels: int) -> bytes:
    """`{"strokes": [[...[[0, 0], [1, 1]]...]]}`, `levels` deep (json.dumps would recurse)."""
    return b'{"strokes": ' + b"[" * levels + b"[[0, 0], [1, 1]]" + b"]" * levels + b"}"


@FUZZ
@given(json_values)
def test_the_depth_check_measures_what_json_nests(value):
    text = json.dumps(value).encode()
    assert limits.json_depth_exceeds(text, limit=3) == (depth(value) > 3)
    assert limits.parse_json(text, max_bytes=10**6) == json.loads(text) or depth(value) > 32


@FUZZ
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_parse_json_returns_or_refuses(data):
    with contextlib.suppress(InputError):
        limits.parse_json(data, max_bytes=300)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b"{" * 100_000,
        nested_strokes(5_000),
        b'["' + b'\\"' * 50_000 + b"]",  # an unterminated string full of escaped quotes
    ],
)
def test_deep_json_is_refused_before_parsing(body):
    with pytest.raises(InputError, match="32 levels|not valid JSON"):
        limits.parse_json(body, max_bytes=len(body))


def multipart(parts: list[tuple[str, bytes]], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, data in parts:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@FUZZ
@given(
    st.sampled_from(CONTENT_TYPES),
    st.binary(max_size=300)
    | st.builds(
        multipart,
        st.lists(
            st.tuples(
                st.sampled_from(["file", "strokes", "inkml", "other", 'x"y']),
                st.binary(max_size=60) | json_values.map(lambda v: json.dumps(v).encode()),
            ),
            max_size=4,
        ),
    )
    | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_every_envelope_parses_or_refuses(content_type, body):
    try:
        submission = submissions.from_http(body, content_type)
    except InputError:
        return
    assert submission.kind in ("image", "strokes", "inkml")


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["a.json", "a.inkml", "a.png", "a"]))
def test_every_drop_parses_or_refuses(data, key):
    with contextlib.suppress(InputError):
        submissions.from_object(data, key)


def test_a_multipart_strokes_part_that_is_not_json_is_a_400():
    body = multipart([("strokes", b"[[[0, 0], [1")])
    with pytest.raises(InputError, match="`strokes` part is not valid JSON"):
        submissions.from_http(body, "multipart/form-data; boundary=XyZ")
    with pytest.raises(InputError, match="exactly one"):
        submissions.from_http(
            multipart([("file", b"x"), ("strokes", b"[]")]), "multipart/form-data; boundary=XyZ"
        )


# --- through the handlers ------------------------------------------------------------------


def with_body(name: str, body: bytes, content_type: str | None = None) -> dict:
    event = load_event(name)
    event["body"] = base64.b64encode(body).decode()
    event["isBase64Encoded"] = True
    if content_type:
        event["headers"]["content-type"] = content_type
    return event


ROUTES = ("api_recognize.json", "api_create_prediction.json", "api_create_feedback.json")
HOSTILE = [
    (b"[" * 100_000, "application/json"),
    (nested_strokes(5_000), "application/json"),
    (multipart([("strokes", b"not json")]), "multipart/form-data; boundary=XyZ"),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("body", "content_type"), HOSTILE)
def test_the_bodies_of_issue_19_get_a_4xx(
    aws, production, lambda_context, route, body, content_type
):
    status, answer = call_api(with_body(route, body, content_type), lambda_context)
    assert 400 <= status < 500, answer
    assert set(answer) == {"message"}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(ROUTES),
    st.sampled_from(CONTENT_TYPES),
    st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_no_body_gets_a_5xx(aws, production, lambda_context, route, content_type, body):
    status, _ = call_api(with_body(route, body, content_type), lambda_context)
    assert status < 500
