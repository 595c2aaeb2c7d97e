"""What a request or a dropped object holds, as one of three kinds of input.

The API takes image bytes (sent raw, base64 in the event), multipart/form-data (a `file`
part, or `strokes`/`inkml` text parts), or JSON: `{"strokes": [[[x, y], ...], ...]}`,
`{"image": "<base64>"}` or `{"inkml": "<ink>...</ink>"}`. Drops are told apart by suffix.
Whatever came in is stored as received, so history thumbnails and retraining see exactly it.
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.parser
import email.policy
import email.utils
import io
import json
from dataclasses import dataclass
from email.message import MIMEPart

from PIL import Image

from functions.common.limits import MAX_MULTIPART_PARTS, parse_json
from inktex.errors import InputError
from inktex.ink import parse_strokes_json, read_inkml
from inktex.render import render_strokes

INKML_TYPE = "application/inkml+xml"
STROKES_TYPE = "application/vnd.inktex.strokes+json"
_IMAGE_TYPES = {  # magic bytes -> (content type, extension)
    b"\x89PNG": ("image/png", ".png"),
    b"\xff\xd8\xff": ("image/jpeg", ".jpg"),
    b"BM": ("image/bmp", ".bmp"),
}
USAGE = (
    "send image bytes, multipart/form-data with a `file` part, or JSON with one of "
    '"strokes", "image" (base64) or "inkml"'
)


@dataclass(frozen=True)
class Submission:
    kind: str  # "image" | "strokes" | "inkml"
    data: bytes  # stored as received
    content_type: str
    ext: str

    def strokes(self):
        return parse_strokes_json(json.loads(self.data))


def image(data: bytes) -> Submission:
    if not data:
        raise InputError(f"the request has no body: {USAGE}")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Submission("image", data, "image/webp", ".webp")
    for magic, (content_type, ext) in _IMAGE_TYPES.items():
        if data.startswith(magic):
            return Submission("image", data, content_type, ext)
    return Submission("image", data, "application/octet-stream", ".bin")  # the decoder decides


def strokes(value: object) -> Submission:
    parse_strokes_json(value)  # refuse malformed strokes before storing them
    return Submission("strokes", json.dumps(value).encode(), STROKES_TYPE, ".json")


def inkml(text: str | bytes) -> Submission:
    data = text.encode() if isinstance(text, str) else text
    read_inkml(data)
    return Submission("inkml", data, INKML_TYPE, ".inkml")


def from_http(body: bytes, content_type: str | None) -> Submission:
    """A request body (already base64-decoded, within the body limit) and its Content-Type
    -> a Submission; anything malformed is an InputError (a 4xx), never another exception."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return _from_json(body)
    if media == "multipart/form-data":
        return _from_multipart(body, content_type or "")
    if media in (INKML_TYPE, "application/xml", "text/xml"):
        return inkml(body)
    return image(body)


def from_object(data: bytes, key: str) -> Submission:
    """A dropped object, by its key's suffix: .inkml, .json (strokes), else an image."""
    lower = key.lower()
    if lower.endswith(".inkml"):
        return inkml(data)
    if lower.endswith(".json"):
        return _from_json(data)
    return image(data)


def _from_json(body: bytes) -> Submission:
    try:
        payload = parse_json(body, max_bytes=len(body))  # the caller bounded its size
    except InputError as exc:
        raise type(exc)(f"{exc}: {USAGE}") from exc
    if isinstance(payload, list):
        return strokes(payload)
    if not isinstance(payload, dict):
        raise InputError(f"unexpected JSON: {USAGE}")
    given = [k for k in ("strokes", "image", "inkml") if k in payload]
    if len(given) != 1:
        raise InputError(f"expected exactly one input, got {given or 'none'}: {USAGE}")
    if given == ["strokes"]:
        return strokes(payload["strokes"])
    if given == ["inkml"]:
        if not isinstance(payload["inkml"], str):
            raise InputError('"inkml" must be a string holding the InkML document')
        return inkml(payload["inkml"])
    try:
        return image(base64.b64decode(payload["image"], validate=True))
    except (binascii.Error, TypeError, ValueError) as exc:
        raise InputError('"image" must be base64-encoded image bytes') from exc


_INPUT_PARTS = ("file", "strokes", "inkml")


def _from_multipart(body: bytes, content_type: str) -> Submission:
    """A multipart/form-data body with exactly one input part (`file`, `strokes`, `inkml`);
    other parts are ignored, but at most MAX_MULTIPART_PARTS of them."""
    try:
        parts = _multipart_parts(body, content_type)
        inputs = [(name, part) for name, part in parts if name in _INPUT_PARTS]
        if len(inputs) != 1:
            found = sorted({name for name, _ in inputs})
            raise InputError(
                f"multipart/form-data needs exactly one `file`, `strokes` or `inkml` part, "
                f"got {found or 'none'}: {USAGE}"
            )
        ((name, part),) = inputs
        payload = part.get_payload(decode=True)  # None for a nested multipart part
        data = payload if isinstance(payload, bytes) else b""
        filename = (part.get_filename() or "").lower()
        is_inkml = filename.endswith(".inkml") or part.get_content_type() == INKML_TYPE
    except InputError:
        raise
    except (email.errors.MessageError, ValueError, LookupError, TypeError, AttributeError) as exc:
        raise InputError(f"the multipart/form-data body cannot be read ({exc}): {USAGE}") from exc
    if name == "strokes":
        payload = parse_json(data, max_bytes=len(data), what="the `strokes` part")
        return strokes(payload)
    if name == "inkml" or is_inkml:
        return inkml(data)
    return image(data)


def _multipart_parts(body: bytes, content_type: str) -> list[tuple[str, MIMEPart]]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise InputError("multipart/form-data without a boundary: send a `file` part")
    parts: list[tuple[str, MIMEPart]] = []
    for part in message.iter_parts():
        if len(parts) == MAX_MULTIPART_PARTS:
            raise InputError(f"the form has more than {MAX_MULTIPART_PARTS} parts")
        name = part.get_param("name", header="content-disposition")
        parts.append((email.utils.collapse_rfc2231_value(name) if name else "", part))
    return parts


def input_png(submission: Submission) -> bytes:
    """What a stored input looks like: strokes and InkML rendered as the model sees them."""
    if submission.kind == "inkml":
        drawn = render_strokes(read_inkml(submission.data).strokes)
    else:
        drawn = render_strokes(submission.strokes())
    out = io.BytesIO()
    Image.fromarray(drawn).save(out, format="PNG")
    return out.getvalue()


def recognize(recognizer, submission: Submission):
    if submission.kind == "strokes":
        return recognizer.recognize_strokes(json.loads(submission.data))
    if submission.kind == "inkml":
        return recognizer.recognize_inkml(submission.data)
    return recognizer.recognize_image(submission.data)
