"""Stroke readers: real CROHME InkML files, canvas JSON, and broken or hostile input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from testkit import require

from inktex.data import SPLITS, crohme_root, data_root, read_labels
from inktex.errors import BlankInputError, InkMLError, StrokesError
from inktex.ink import (
    MAX_COORD,
    MAX_INKML_BYTES,
    MAX_POINTS,
    MAX_STROKES,
    parse_strokes_json,
    read_inkml,
)
from inktex.latex import normalize_latex


@pytest.fixture(scope="session")
def crohme_inkml() -> Path:
    folder = data_root() / "crohme-inkml"
    require(folder.is_dir(), f"the CROHME InkML samples are not at {folder} (INKTEX_DATA)")
    return folder


def fixture_labels(fixtures: Path) -> dict[str, str]:
    return dict(read_labels(fixtures / "inkml" / "labels.tsv"))


def check_document(path: Path) -> None:
    doc = read_inkml(path)
    assert doc.strokes, path.name
    for s in doc.strokes:
        assert s.dtype == np.float64 and s.ndim == 2 and s.shape[1] == 2 and len(s) >= 1
        assert np.isfinite(s).all()


# --- real files ------------------------------------------------------------------------------


def test_fixture_inkml_files_parse_and_have_a_truth(fixtures: Path) -> None:
    labels = fixture_labels(fixtures)
    files = sorted((fixtures / "inkml").glob("*.inkml"))
    assert len(files) == 5
    for path in files:
        check_document(path)
        doc = read_inkml(path)
        # The test-set files carry no truth; labels.tsv holds the corpus's label for them.
        truth = doc.truth or labels[path.stem]
        assert normalize_latex(truth), path.name
        if doc.truth:
            assert normalize_latex(doc.truth) == normalize_latex(labels[path.stem]), path.name


def test_fixture_shapes_are_what_the_files_hold(fixtures: Path) -> None:
    doc = read_inkml(fixtures / "inkml" / "RIT_2014_19.inkml")
    assert len(doc.strokes) == 12
    assert doc.strokes[0][:2].tolist() == [[217, 293], [221, 289]]  # the file's first points
    assert doc.truth is None
    assert doc.annotations == {"UI": "2014_RIT_CROHME_19", "copyright": "RIT_2014"}
    dots = read_inkml(fixtures / "inkml" / "518_em_425.inkml").strokes
    assert sum(len(s) == 1 for s in dots) == 2  # one-point strokes are kept: dots are ink
    # MfrDB has X Y T points: the time channel is dropped.
    mfr = read_inkml(fixtures / "inkml" / "MfrDB1843.inkml")
    assert mfr.strokes[0][0].tolist() == [137, 194]
    assert mfr.truth == "2 l o g ( x - 3 ) = l o g ( 5 - x )"  # `$` stripped
    assert mfr.annotations["writer"] == "User132"


def test_bytes_text_and_path_read_alike(fixtures: Path) -> None:
    path = fixtures / "inkml" / "KME1G3_2_sub_10.inkml"
    docs = [read_inkml(path), read_inkml(path.read_bytes()), read_inkml(path.read_text())]
    for doc in docs[1:]:
        assert doc.truth == docs[0].truth
        assert all(np.array_equal(a, b) for a, b in zip(doc.strokes, docs[0].strokes, strict=True))


@pytest.mark.crohme
def test_every_crohme_inkml_file_parses_and_has_a_truth(crohme_inkml: Path) -> None:
    files = sorted(crohme_inkml.glob("*.inkml"))
    assert len(files) == 41
    root = crohme_root()
    require((root / "test2014.tsv").is_file(), f"the CROHME labels are not at {root}")
    corpus = {n.rsplit("/", 1)[-1]: t for s in SPLITS for n, t in read_labels(root / f"{s}.tsv")}
    for path in files:
        check_document(path)
        doc = read_inkml(path)
        # Truth is in the file, or (test sets) in the corpus's labels, or (one ground-truth
        # demo pair) in the `GT` twin holding the same ink.
        twin = path.with_name(f"{path.stem}GT.inkml")
        truth = doc.truth or corpus.get(path.stem) or (twin.exists() and read_inkml(twin).truth)
        assert truth, f"{path.name} has no truth anywhere"
        assert normalize_latex(truth), path.name
        if doc.truth and path.stem in corpus:
            assert normalize_latex(doc.truth) == normalize_latex(corpus[path.stem]), path.name


# --- canvas JSON -----------------------------------------------------------------------------


def test_json_strokes_in_every_accepted_shape() -> None:
    obj = json.loads(
        '[[[10, 20], [11.5, 21]], [{"x": 3, "y": 4}], [[5, 6, 1712.5, 0.8]], [], [[0, 0]]]'
    )
    strokes = parse_strokes_json(obj)
    assert [s.tolist() for s in strokes] == [
        [[10, 20], [11.5, 21]],
        [[3, 4]],
        [[5, 6]],  # time and pressure dropped
        [[0, 0]],  # the empty stroke is dropped; dots and the origin are ink
    ]
    assert all(s.dtype == np.float64 and s.shape[1] == 2 for s in strokes)


def test_inkml_strokes_round_trip_through_json(fixtures: Path) -> None:
    strokes = read_inkml(fixtures / "inkml" / "RIT_2014_19.inkml").strokes
    again = parse_strokes_json(json.loads(json.dumps([s.tolist() for s in strokes])))
    assert all(np.array_equal(a, b) for a, b in zip(again, strokes, strict=True))


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"strokes": []}, "must be a JSON list"),
        ("[[1, 2]]", "must be a JSON list"),
        ([[[0, 0]], "stroke"], "stroke 1 must be a list"),
        ([[[0, 0], [1]]], "stroke 0, point 1"),
        ([[[0, "1"]]], "two numbers"),
        ([[[True, 1]]], "two numbers"),
        ([[{"x": 1}]], "two numbers"),
        ([[[0, 0], [float("nan"), 1]]], "NaN or infinite"),
        ([[[0, 0]], [[1, float("inf")]]], "stroke 1 has a NaN or infinite"),
        ([[[0, 0], [-1, 5]]], "negative"),
        ([[[0, MAX_COORD * 2]]], "above the limit"),
        ([[[0, 0]]] * (MAX_STROKES + 1), "strokes is more than the limit"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_json_strokes_are_refused_with_a_reason(obj: object, message: str) -> None:
    with pytest.raises(StrokesError, match=message):
        parse_strokes_json(obj)


def test_a_million_points_are_refused_before_conversion() -> None:
    # One shared point object a million times: counting is all that may happen.
    with pytest.raises(StrokesError, match=f"limit of {MAX_POINTS}"):
        parse_strokes_json([[[1.0, 2.0]] * 1_000_000])


@pytest.mark.parametrize("obj", [[], [[], []]])
def test_no_points_is_blank_input(obj: list) -> None:
    with pytest.raises(BlankInputError):
        parse_strokes_json(obj)


# --- bad InkML -------------------------------------------------------------------------------

NS = 'xmlns="http://www.w3.org/2003/InkML"'

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE ink [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ink xmlns="http://www.w3.org/2003/InkML"><annotation type="truth">&lol9;</annotation>
<trace>1 2, 3 4</trace></ink>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE ink [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<ink xmlns="http://www.w3.org/2003/InkML"><annotation type="truth">&secret;</annotation>
<trace>1 2, 3 4</trace></ink>"""


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (f"<ink {NS}><trace>1 2, 3 4</trace>", "not well-formed"),
        ("not xml at all", "not well-formed"),
        (b"", "file is empty"),
        (b"  \n", "file is empty"),
        (BILLION_LAUGHS, "DTD or entities"),
        (EXTERNAL_ENTITY, "DTD or entities"),
        (f'<ink {NS}><annotation type="truth">x</annotation></ink>', "no <trace>"),
        (f"<ink {NS}><trace>  </trace></ink>", "every <trace> in the InkML is empty"),
        (f"<ink {NS}><trace>1 2, 3 x</trace></ink>", "point 1: not a number"),
        (f"<ink {NS}><trace>1 2, 3</trace></ink>", "expected X Y"),
        (f"<ink {NS}><trace>1 2, nan 4</trace></ink>", "NaN or infinite"),
        (f"<ink {NS}><trace>1 2, 1e999 4</trace></ink>", "NaN or infinite"),
        (f"<ink {NS}><trace>1 2, 3 {MAX_COORD * 2:.0f}</trace></ink>", "above the limit"),
        (f"<ink {NS}><trace>10 20, '1 '2, \"0 \"0</trace></ink>", "difference encoding"),
        (f"<svg {NS}><trace>1 2</trace></svg>", "not <ink>"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_bad_inkml_is_refused_with_a_reason(doc: str | bytes, message: str) -> None:
    with pytest.raises(InkMLError, match=message):
        read_inkml(doc)


def test_oversize_inkml_is_refused_before_parsing(tmp_path: Path) -> None:
    # Well-formed but too big: the limit must apply before any XML is read.
    big = f"<ink {NS}><trace>{'1 2, ' * (MAX_INKML_BYTES // 5)}1 2</trace></ink>"
    with pytest.raises(InkMLError, match="over the limit"):
        read_inkml(big)
    path = tmp_path / "big.inkml"
    path.write_text(big)
    with pytest.raises(InkMLError, match="over the limit"):
        read_inkml(path)


def test_missing_file_is_an_inkml_error(tmp_path: Path) -> None:
    with pytest.raises(InkMLError, match="cannot read"):
        read_inkml(tmp_path / "missing.inkml")


def test_inkml_without_namespace_and_with_reordered_channels() -> None:
    doc = read_inkml(
        "<ink><traceFormat><channel name='T'/><channel name='Y'/><channel name='X'/>"
        "</traceFormat><annotation type='truth'> $x^2$ </annotation>"
        "<trace>0 20 10, 1 21 11,</trace><trace>5 -3 -4</trace></ink>"
    )
    # X Y wherever the channels put them; a trailing comma is tolerated; device units
    # may be negative in InkML (the renderer fits whatever box the ink has).
    assert [s.tolist() for s in doc.strokes] == [[[10, 20], [11, 21]], [[-4, -3]]]
    assert doc.truth == "x^2"
