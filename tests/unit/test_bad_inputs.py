"""Bad input through the serving runtime: each case gets its typed error and a clear message,
within 6 s of CPU and under 1 GiB of memory.

Each case runs in a fresh process under kernel limits instead of a stopwatch: address space
1 GiB (a MemoryError or a kill fails the case), CPU 20 s for the imports and the model load,
then a 6 s CPU-time timer (ITIMER_PROF) for the case itself, whose signal ends the process.
A hang or a quadratic path blows these budgets; they are generous because CPU time itself
stretches when both cores are busy (a million points took over 2 s in a loaded CI run).
Payloads are crafted here and are small on disk: the huge images only claim to be huge, and
the bomb is a real PNG of 8 kB that would decode to 64 megapixels.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from inktex.errors import (
    BlankInputError,
    ImageError,
    ImageTooLargeError,
    InkMLError,
    StrokesError,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"

RUNNER = r"""
import json, resource, signal, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
resource.setrlimit(resource.RLIMIT_CPU, (20, 21))
from inktex.runtime import OnnxRecognizer
package, method, payload_path = sys.argv[1:]
recognize = getattr(OnnxRecognizer.load(package), method)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
began = cpu()
signal.setitimer(signal.ITIMER_PROF, 6.0)  # the case's own CPU budget
with open(payload_path, "rb") as fh:
    payload = fh.read()
try:
    # Strokes arrive as JSON, parsed as the API parses them (NaN and Infinity included).
    recognize(json.loads(payload) if method == "recognize_strokes" else payload)
except Exception as exc:
    outcome = {"error": type(exc).__name__, "message": str(exc)}
else:
    outcome = {"error": None, "message": ""}
signal.setitimer(signal.ITIMER_PROF, 0)
print(json.dumps({**outcome, "cpu_s": round(cpu() - began, 3)}))
"""


def run_case(method: str, payload: bytes, tmp_path: Path) -> dict:
    """The outcome of one request in a fresh, limited process."""
    path = tmp_path / "payload"
    path.write_bytes(payload)
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(FIXTURES / "tiny_model"), method, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        # One BLAS thread, as in a Lambda: on a many-core CI host, per-thread BLAS buffers
        # would reserve address space that has nothing to do with the request.
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        timeout=600,  # a safety net against a hang outside the CPU clock, not a measure
    )
    killed = {-signal.SIGPROF: "over its 6 s of CPU", -signal.SIGXCPU: "over 20 s of CPU"}
    assert proc.returncode == 0, (
        f"the case died {killed.get(proc.returncode, f'(exit {proc.returncode})')}: "
        f"{proc.stderr[-2000:]}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_refused(outcome: dict, error: type[Exception], message: str) -> None:
    assert outcome["error"] == error.__name__, outcome
    assert re.search(message, outcome["message"]), outcome
    assert "Traceback" not in outcome["message"]


# ---- crafted payloads ----------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(
    width: int, height: int, idat: bytes = b"", depth: int = 8, extra: bytes = b""
) -> bytes:
    """A grayscale PNG from its chunks: the header may claim any size, whatever follows."""
    header = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + extra
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP's headers with no pixels behind them."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def fixture_png() -> bytes:
    return (FIXTURES / "inkml" / "518_em_425.png").read_bytes()


# ---- the cases ------------------------------------------------------------------------------


def test_a_real_request_passes_under_the_same_limits(tmp_path):
    outcome = run_case("recognize_image", fixture_png(), tmp_path)
    assert outcome["error"] is None, outcome


def test_not_an_image(tmp_path):
    outcome = run_case("recognize_image", b"%PDF-1.7 this is a document, not a picture", tmp_path)
    assert_refused(outcome, ImageError, "not a readable image.*unknown type.*send a PNG, JPEG")


def test_a_truncated_png(tmp_path):
    data = fixture_png()
    outcome = run_case("recognize_image", data[: len(data) // 2], tmp_path)
    assert_refused(outcome, ImageError, "truncated.*send a PNG")


def test_a_zero_by_zero_image(tmp_path):
    outcome = run_case("recognize_image", png_bytes(0, 0), tmp_path)
    assert_refused(outcome, ImageError, "no pixels")


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])
def test_a_200_megapixel_image_is_refused_from_its_header(fmt, tmp_path):
    data = png_bytes(20_000, 10_000) if fmt == "PNG" else bmp_header(20_000, 10_000)
    assert len(data) < 100  # never allocated: the header alone is refused
    outcome = run_case("recognize_image", data, tmp_path)
    assert_refused(outcome, ImageTooLargeError, "too large.*50 megapixels.*smaller photo")


@pytest.mark.parametrize("where", ["pixels", "text chunk"])
def test_a_decompression_bomb(where, tmp_path):
    if where == "pixels":  # 8000 x 8000 one-bit zeros: 8 kB that decode to 64 megapixels
        rows = zlib.compressobj(9)
        row = b"\x00" * (1 + 8000 // 8)
        idat = b"".join(rows.compress(row) for _ in range(8000)) + rows.flush()
        data = png_bytes(8000, 8000, idat, depth=1)
        error, message = ImageTooLargeError, "64 megapixels; the limit is 50"
    else:  # a 4x4 image whose compressed comment inflates to 64 MB
        text = b"Comment\x00\x00" + zlib.compress(b"A" * (64 << 20), 9)
        idat = zlib.compress(b"\x00\xff\xff\xff\xff" * 4)
        data = png_bytes(4, 4, idat, extra=_chunk(b"zTXt", text))
        error, message = ImageError, "not a readable image.*too large"
    assert len(data) < 100_000
    assert_refused(run_case("recognize_image", data, tmp_path), error, message)


@pytest.mark.parametrize("frames", [1, 2])
def test_gif_and_tiff_are_refused_as_docs_security_md_lists(tmp_path, frames):
    """PNG, JPEG, WebP and BMP only (docs/security.md): a GIF, animated or not, and a TIFF."""
    images = [Image.new("L", (64, 64), 255 * (i % 2)) for i in range(frames)]
    data = encoded(images[0], "GIF", save_all=True, append_images=images[1:])
    outcome = run_case("recognize_image", data, tmp_path)
    assert_refused(outcome, ImageError, "unsupported image type GIF: send PNG, JPEG, WebP or BMP")
    outcome = run_case("recognize_image", encoded(images[0], "TIFF"), tmp_path)
    assert_refused(outcome, ImageError, "unsupported image type TIFF")


def test_a_blank_page(tmp_path):
    page = encoded(Image.new("L", (1200, 900), 240))
    assert_refused(run_case("recognize_image", page, tmp_path), BlankInputError, "blank")


def test_a_50_megapixel_photo_is_accepted_within_the_limits(tmp_path):
    """The largest photo the runtime takes (a phone's 50 MP) fits the same budget."""
    photo = Image.new("L", (8660, 5770), 225)
    draw = ImageDraw.Draw(photo)
    for i in range(12):  # pen strokes 10 px wide across the middle of the page
        draw.line([(2500 + 300 * i, 2200), (2650 + 300 * i, 3400)], fill=40, width=10)
    outcome = run_case("recognize_image", encoded(photo, compress_level=1), tmp_path)
    assert outcome["error"] is None, outcome


@pytest.mark.parametrize("point", ["[0, NaN]", "[NaN, 4]"])
def test_strokes_with_nan(point, tmp_path):
    strokes = f"[[[1, 2], {point}, [3, 4]]]".encode()
    outcome = run_case("recognize_strokes", strokes, tmp_path)
    assert_refused(outcome, StrokesError, "NaN or infinite")


@pytest.mark.parametrize("point", ["[0, Infinity]", "[-Infinity, 4]", "[1e999, 4]"])
def test_strokes_with_infinite_coordinates(point, tmp_path):
    strokes = f"[[[1, 2], {point}]]".encode()
    outcome = run_case("recognize_strokes", strokes, tmp_path)
    assert_refused(outcome, StrokesError, "NaN or infinite")


def test_strokes_with_negative_coordinates(tmp_path):
    outcome = run_case("recognize_strokes", b"[[[10, 20], [-5, 30]]]", tmp_path)
    assert_refused(outcome, StrokesError, "negative coordinate")


def test_a_million_points(tmp_path):
    strokes = ("[[" + ",".join(["[12.5, 40.25]"] * 1_000_000) + "]]").encode()
    outcome = run_case("recognize_strokes", strokes, tmp_path)
    assert_refused(outcome, StrokesError, "1000000 points is more than the limit")


@pytest.mark.parametrize(
    "document",
    [
        b"<ink><trace>10 20, 30 40</ink>",  # mismatched tag
        b"<ink><trace>10 20, 30",  # cut off
        b"\xff\xfe<ink/>",  # not text
    ],
)
def test_malformed_inkml(document, tmp_path):
    outcome = run_case("recognize_inkml", document, tmp_path)
    assert_refused(outcome, InkMLError, "not well-formed XML.*send an InkML")


@pytest.mark.parametrize(
    "doctype",
    [
        # billion laughs: ten levels of ten-fold entity expansion (10^10 characters)
        "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10 if i else "lol"}">' for i in range(10)),
        '<!ENTITY e9 SYSTEM "file:///etc/passwd">',  # an external entity (XXE)
    ],
)
def test_hostile_inkml_with_entity_expansion(doctype, tmp_path):
    document = f'<?xml version="1.0"?><!DOCTYPE ink [{doctype}]><ink><trace>&e9;</trace></ink>'
    outcome = run_case("recognize_inkml", document.encode(), tmp_path)
    assert_refused(outcome, InkMLError, "DTD or entities.*refused")
