"""Pen strokes: as the web canvas sends them (JSON) and as InkML files hold them.

A drawing is `Strokes`, a list of `(n, 2)` float64 arrays of `x, y` points, y growing
downward as on a canvas and in InkML. Both readers check sizes before they convert
anything, so a hostile request costs little, and answer bad input with a typed error
whose message says what was wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from inktex.errors import BlankInputError, InkMLError, StrokesError

Strokes = list[np.ndarray]

MAX_STROKES = 1000  # a long handwritten equation has under 100
MAX_POINTS = 100_000  # in total; a canvas samples ~100 points per second of writing
MAX_COORD = 100_000.0  # canvas pixels; CROHME's largest device units stay under 20,000
MAX_INKML_BYTES = 5 * 1024 * 1024  # CROHME files are under 25 kB
_DIFFERENCE_MARKS = "'\"!?*"  # InkML's difference-encoding prefixes; CROHME uses none
_XML_ID = "{http://www.w3.org/XML/1998/namespace}id"


@dataclass(frozen=True)
class Symbol:
    """A symbol-level trace group: its label and the indices of its strokes in `strokes`."""

    label: str
    strokes: tuple[int, ...]


@dataclass(frozen=True)
class InkMLDocument:
    """An InkML file's strokes, its expression-level `truth` LaTeX, and its annotations.

    `symbols` are the symbol-level trace groups where the file has them (CROHME's do);
    `repairs` says what was wrong with the file but could be read around (a Latin-1 byte,
    a truth annotation without a type, a trace with no points), so a corpus can count it.
    """

    strokes: Strokes
    truth: str | None
    annotations: dict[str, str] = field(default_factory=dict)
    symbols: tuple[Symbol, ...] = ()
    repairs: tuple[str, ...] = ()


def parse_strokes_json(obj: object) -> Strokes:
    """Strokes from decoded JSON: a list of strokes, each a list of `[x, y]` or `{"x", "y"}`.

    Extra per-point values (time, pressure) are ignored. Coordinates must be finite and in
    `[0, MAX_COORD]`. Empty strokes are dropped; no points at all is BlankInputError.
    """
    if not isinstance(obj, list):
        raise StrokesError(
            f"strokes must be a JSON list of strokes, each a list of [x, y] points, "
            f"not {type(obj).__name__}"
        )
    if len(obj) > MAX_STROKES:
        raise StrokesError(f"{len(obj)} strokes is more than the limit of {MAX_STROKES}")
    total = 0
    for i, stroke in enumerate(obj):
        if not isinstance(stroke, list):
            raise StrokesError(
                f"stroke {i} must be a list of [x, y] points, not {type(stroke).__name__}"
            )
        total += len(stroke)
    # Counted before any conversion, so a million points is refused in microseconds.
    if total > MAX_POINTS:
        raise StrokesError(f"{total} points is more than the limit of {MAX_POINTS}")
    if total == 0:
        raise BlankInputError("no handwriting found: the drawing has no points")
    strokes = [_json_stroke(i, s) for i, s in enumerate(obj) if s]
    _check_coordinates(strokes, allow_negative=False)
    return strokes


def _json_stroke(index: int, stroke: list) -> np.ndarray:
    out = np.empty((len(stroke), 2), dtype=np.float64)
    for j, p in enumerate(stroke):
        if isinstance(p, dict):
            x, y = p.get("x"), p.get("y")
        elif isinstance(p, list | tuple) and len(p) >= 2:
            x, y = p[0], p[1]
        else:
            x = y = None
        if not (_is_number(x) and _is_number(y)):
            raise StrokesError(
                f"stroke {index}, point {j}: a point must be two numbers [x, y] "
                f'or {{"x": .., "y": ..}}, got {str(p)[:40]}'
            )
        out[j] = (x, y)
    return out


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_coordinates(strokes: Strokes, allow_negative: bool) -> None:
    for i, s in enumerate(strokes):
        if not np.isfinite(s).all():
            raise StrokesError(f"stroke {i} has a NaN or infinite coordinate")
        if not allow_negative and (s < 0).any():
            raise StrokesError(f"stroke {i} has a negative coordinate: points start at 0, 0")
        if (np.abs(s) > MAX_COORD).any():
            raise StrokesError(f"stroke {i} has a coordinate above the limit of {MAX_COORD:g}")


def read_inkml(data: bytes | str | Path) -> InkMLDocument:
    """Strokes and truth of an InkML document: its bytes, its text (a `str` is the
    document, never a file name), or a file's `Path`.

    DTDs and entities are refused outright (no billion-laughs, no external files), and so
    is a document over MAX_INKML_BYTES, before parsing.
    """
    if isinstance(data, Path):
        try:
            with open(data, "rb") as fh:
                raw = fh.read(MAX_INKML_BYTES + 1)  # one byte more tells it is too large
        except OSError as exc:
            raise InkMLError(f"cannot read {data}: {exc}") from exc
    else:
        raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_INKML_BYTES:
        raise InkMLError(
            f"the InkML is over the limit of {MAX_INKML_BYTES / 1e6:.1f} MB: "
            "send one expression's ink"
        )
    if not raw.strip():
        raise InkMLError("the InkML file is empty: there is no ink to read")
    repairs: list[str] = []
    root = _parse_xml(raw, repairs)
    if _local(root.tag) != "ink":
        raise InkMLError(f"the root element is <{_local(root.tag)}>, not <ink>: not InkML")
    annotations: dict[str, str] = {}
    for el in root:
        if _local(el.tag) != "annotation":
            continue
        if kind := el.get("type"):
            annotations[kind] = (el.text or "").strip()
        else:
            repairs.append("an annotation has no type (it is ignored)")
    strokes, stroke_index = _traces(root, repairs)
    truth = annotations.get("truth", "").strip().strip("$").strip() or None
    return InkMLDocument(
        strokes=strokes,
        truth=truth,
        annotations=annotations,
        symbols=_symbols(root, stroke_index),
        repairs=tuple(repairs),
    )


def _parse_xml(raw: bytes, repairs: list[str]) -> Element:
    try:
        return fromstring(raw, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise InkMLError(
            "the InkML declares a DTD or entities, which are refused for safety: "
            "send plain InkML without a <!DOCTYPE>"
        ) from exc
    except (ParseError, LookupError, ValueError) as exc:  # LookupError: an unknown encoding
        error = exc
    if not raw.lstrip().startswith(b"<?xml"):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            # Undeclared non-UTF-8 text (CROHME has one such file): every byte is Latin-1.
            repairs.append("a byte is not UTF-8: read as Latin-1")
            try:
                return fromstring(raw.decode("latin-1"), forbid_dtd=True)
            except (ParseError, ValueError):
                pass
    raise InkMLError(f"not well-formed XML ({error}): send an InkML document") from error


def _symbols(root: Element, stroke_index: dict[str, int]) -> tuple[Symbol, ...]:
    """Trace groups that directly reference strokes: CROHME's symbol segmentation."""
    symbols = []
    for group in root.iter():
        if _local(group.tag) != "traceGroup":
            continue
        refs = [
            stroke_index[el.get("traceDataRef", "")]
            for el in group
            if _local(el.tag) == "traceView" and el.get("traceDataRef", "") in stroke_index
        ]
        label = next(
            ((el.text or "").strip() for el in group if _local(el.tag) == "annotation"), ""
        )
        if refs:
            symbols.append(Symbol(label, tuple(refs)))
    return tuple(symbols)


def _local(tag: object) -> str:
    """Tag name without its namespace: CROHME files use the InkML namespace, others none."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _xy_columns(root: Element) -> tuple[int, int]:
    """Where X and Y sit in a point, from <traceFormat> (default: first two values)."""
    for el in root.iter():
        if _local(el.tag) == "traceFormat":
            names = [c.get("name", "") for c in el if _local(c.tag) == "channel"]
            if "X" in names and "Y" in names:
                return names.index("X"), names.index("Y")
            break
    return 0, 1


def _traces(root: Element, repairs: list[str]) -> tuple[Strokes, dict[str, int]]:
    """The strokes, and each trace id's index among them (empty traces have none)."""
    ix, iy = _xy_columns(root)
    need = max(ix, iy) + 1
    traces = [el for el in root.iter() if _local(el.tag) == "trace"]
    texts = [
        (el.get("id") or el.get(_XML_ID) or str(i), el.text or "") for i, el in enumerate(traces)
    ]
    if not texts:
        raise InkMLError("the InkML holds no <trace> elements: there is no ink to read")
    if len(texts) > MAX_STROKES:
        raise InkMLError(f"{len(texts)} traces is more than the limit of {MAX_STROKES}")
    if sum(t.count(",") + 1 for _, t in texts) > MAX_POINTS:
        raise InkMLError(f"the InkML holds more than {MAX_POINTS} points")
    strokes: Strokes = []
    index: dict[str, int] = {}
    for trace_id, text in texts:
        if not text.strip():
            repairs.append("a trace has no points (it is skipped)")
            continue  # an empty trace is no ink, not an error
        if any(mark in text for mark in _DIFFERENCE_MARKS):
            raise InkMLError(
                f"trace {trace_id} uses InkML difference encoding, which is not supported: "
                "send explicit X Y values"
            )
        index[trace_id] = len(strokes)
        strokes.append(_trace_points(trace_id, text, ix, iy, need))
    if not strokes:
        raise InkMLError("every <trace> in the InkML is empty: there is no ink to read")
    try:
        _check_coordinates(strokes, allow_negative=True)  # device units may be negative
    except StrokesError as exc:
        raise InkMLError(str(exc)) from exc
    return strokes, index


def _trace_points(trace_id: str, text: str, ix: int, iy: int, need: int) -> np.ndarray:
    points = []
    for k, point in enumerate(text.strip().rstrip(",").split(",")):
        values = point.split()
        if len(values) < need:
            raise InkMLError(f"trace {trace_id}, point {k}: expected X Y values, got {point!r}")
        try:
            x, y = float(values[ix]), float(values[iy])
        except ValueError as exc:
            raise InkMLError(f"trace {trace_id}, point {k}: not a number in {point!r}") from exc
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InkMLError(f"trace {trace_id}, point {k}: NaN or infinite value in {point!r}")
        points.append((x, y))
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)
