"""The limits on what a request may hold, in one place: checked before anything is parsed.

`parse_json` is the only way the functions read JSON that a client sent (request bodies,
dropped `.json` strokes, a multipart `strokes` part). It refuses, before `json.loads` runs,
a body over its size limit and one that nests deeper than `MAX_JSON_DEPTH`: Python's JSON
parser recurses once per level, so 100,000 `[` would otherwise end in a RecursionError, a
500. The depth is measured in linear time with bytes operations (no recursion, no regex
backtracking). `public_limits` is what the web UI reads from `config.json` (the local stack
serves it, `infra/deploy_web.py` renders it for AWS), built by `limits_of` from the functions'
own environments in template.yaml, so the page and the server state the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from functions.common.config import Settings
from inktex.errors import InputError, RequestTooLargeError

MAX_JSON_DEPTH = 32  # strokes nest 4 deep ({"strokes": [[[x, y]]]}); nothing needs more
MAX_MULTIPART_PARTS = 16
MAX_LATEX_CHARS = 4000  # a correction's LaTeX (POST /feedback)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp")
# The functions that enforce the two sizes; template.yaml sets each in that function's
# environment (MAX_BODY_BYTES: the API's request bodies; MAX_UPLOAD_BYTES: the drop function).
BODY_LIMIT_FUNCTION = "ApiFunction"
UPLOAD_LIMIT_FUNCTION = "UploadInferenceFunction"

_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class JsonRefused(InputError):
    """JSON refused before parsing: too deep, or not JSON at all."""

    status = 400


def json_depth_exceeds(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `data`, read as JSON, opens more than `limit` arrays/objects inside each other
    (or leaves more than `limit` open). Brackets inside strings do not count."""
    # drop escaped backslashes, then escaped quotes: every quote left delimits a string
    plain = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(plain.split(b'"')[::2])
    brackets = outside.translate(_BRACKETS, delete=_NOT_BRACKETS)
    for _ in range(limit):  # each pass closes the innermost level
        if b"[]" not in brackets:
            break
        brackets = brackets.replace(b"[]", b"")
    return b"[]" in brackets or len(brackets) > limit


def parse_json(data: bytes | str, max_bytes: int, what: str = "the body") -> object:
    """JSON a client sent, within `max_bytes` and `MAX_JSON_DEPTH`; InputError otherwise."""
    raw = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise RequestTooLargeError(f"{what} is {len(raw)} bytes; the limit is {max_bytes}")
    if json_depth_exceeds(raw):
        raise JsonRefused(
            f"{what} nests JSON more than {MAX_JSON_DEPTH} levels deep: "
            "send strokes as [[[x, y], ...], ...]"
        )
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise JsonRefused(f"{what} is not valid JSON ({exc})") from exc


def request_json_deserializer(max_bytes: Callable[[], int]):
    """A `json_body_deserializer` for Powertools' resolver: the same checks, reported as
    `json.JSONDecodeError`, which its request validation answers with a 422. `max_bytes` is
    asked per request (the settings are read once per container, after import)."""

    def loads(text: str) -> object:
        try:
            return parse_json(text, max_bytes())
        except InputError as exc:
            raise json.JSONDecodeError(str(exc), text if isinstance(text, str) else "", 0) from exc

    return loads


def public_limits(max_body_bytes: int, max_upload_bytes: int) -> dict:
    """The limits a client should know before it sends (`config.json`'s `limits`)."""
    return {
        "maxBodyBytes": max_body_bytes,
        "maxUploadBytes": max_upload_bytes,
        "maxJsonDepth": MAX_JSON_DEPTH,
        "maxLatexChars": MAX_LATEX_CHARS,
        "imageTypes": list(IMAGE_TYPES),
    }


def limits_of(environments: Mapping[str, Mapping[str, str]]) -> dict:
    """`public_limits` from the functions' environments (logical id -> variables, as
    template.yaml sets them), read as the functions themselves read them (`Settings`)."""
    body = Settings.from_env(environments[BODY_LIMIT_FUNCTION]).max_body_bytes
    upload = Settings.from_env(environments[UPLOAD_LIMIT_FUNCTION]).max_upload_bytes
    return public_limits(body, upload)
