"""The stroke renderer against the CROHME offline images of the same ink.

Thresholds come from measuring, when the renderer was written, all 36 InkML files of the
corpus that have an offline PNG (render vs. PNG; the controls were run on the 5 fixtures):
- dark-core bounding box: off by at most 1 px (we allow 2);
- dark pixel count: ratio 0.96..1.10 (we allow 0.75..1.25; a 1-px pen gives 0.48, a 4-px
  pen 2.2);
- IoU of 3x3-dilated ink after `preprocess_gray`: 0.73..0.90, median 0.85 (we require 0.6;
  the same ink upside down gives 0.02..0.30);
- mean absolute gray difference: 0.5..4.4 levels (we allow 6; a 20 px margin gives 5.5..12.6);
- share of ink pixels that are mid-gray (antialiasing): 0.66..0.73 offline, 0.58..0.66 here
  (we allow 0.15 apart; an unblurred pen would give 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from testkit import require

from inktex.data import data_root
from inktex.errors import BlankInputError, StrokesError
from inktex.ink import parse_strokes_json, read_inkml
from inktex.preprocess import PreprocessConfig, preprocess_gray
from inktex.render import render_strokes

DARK = 128  # a pixel darker than this is stroke core, not its soft edge


def ink_box(gray: np.ndarray) -> np.ndarray:
    """(top, bottom, left, right) of the dark pixels."""
    rows = np.flatnonzero((gray < DARK).any(axis=1))
    cols = np.flatnonzero((gray < DARK).any(axis=0))
    return np.array([rows[0], rows[-1], cols[0], cols[-1]])


def dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 dilation: a one-pixel misregistration of a 1-2 px stroke should not count."""
    h, w = mask.shape
    p = np.pad(mask, 1)
    return np.logical_or.reduce([p[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])


def mid_gray_share(gray: np.ndarray) -> float:
    ink = gray < 255
    return float(((gray >= DARK) & ink).sum() / ink.sum())


def assert_resembles(rendered: np.ndarray, offline: np.ndarray, name: str) -> None:
    assert rendered.shape == offline.shape == (256, 256) and rendered.dtype == np.uint8, name
    assert np.abs(ink_box(rendered) - ink_box(offline)).max() <= 2, name
    ratio = (rendered < DARK).sum() / (offline < DARK).sum()
    assert 0.75 <= ratio <= 1.25, f"{name}: stroke pixels {ratio:.2f}x the offline image's"
    assert np.abs(rendered.astype(float) - offline).mean() < 6, name
    assert abs(mid_gray_share(rendered) - mid_gray_share(offline)) < 0.15, name
    cfg = PreprocessConfig()
    a = dilate(preprocess_gray(rendered, cfg) > 0.5)
    b = dilate(preprocess_gray(offline, cfg) > 0.5)
    iou = (a & b).sum() / (a | b).sum()
    assert iou > 0.6, f"{name}: model inputs overlap {iou:.2f}"


def test_renders_look_like_the_fixture_offline_images(fixtures: Path) -> None:
    files = sorted((fixtures / "inkml").glob("*.inkml"))
    assert len(files) == 5
    for path in files:
        offline = np.asarray(Image.open(path.with_suffix(".png")).convert("L"))
        assert_resembles(render_strokes(read_inkml(path).strokes), offline, path.name)


@pytest.mark.crohme
def test_renders_look_like_every_corpus_offline_image(crohme: Path) -> None:
    folder = data_root() / "crohme-inkml"
    require(folder.is_dir(), f"the CROHME InkML samples are not at {folder} (INKTEX_DATA)")
    pngs = {p.stem: p for p in crohme.glob("**/*.png")}
    pairs = [(p, pngs[p.stem]) for p in sorted(folder.glob("*.inkml")) if p.stem in pngs]
    assert len(pairs) == 36
    for inkml, png in pairs:
        offline = np.asarray(Image.open(png).convert("L"))
        assert_resembles(render_strokes(read_inkml(inkml).strokes), offline, inkml.name)


def test_canvas_json_renders_exactly_like_the_inkml(fixtures: Path) -> None:
    strokes = read_inkml(fixtures / "inkml" / "KME1G3_2_sub_10.inkml").strokes
    canvas = parse_strokes_json(json.loads(json.dumps([s.tolist() for s in strokes])))
    assert np.array_equal(render_strokes(canvas), render_strokes(strokes))


@pytest.mark.parametrize(("scale", "shift"), [(2.0, 0.0), (3.0, 17.25), (0.37, 1000.0)])
def test_only_the_shape_of_the_ink_matters(fixtures: Path, scale: float, shift: float) -> None:
    strokes = read_inkml(fixtures / "inkml" / "518_em_425.inkml").strokes
    base = render_strokes(strokes)
    moved = render_strokes([s * scale + shift for s in strokes])
    # Points that land exactly half-way between pixels may round the other way.
    assert (base != moved).sum() <= 0.03 * (base < 255).sum()


def test_layout_y_down_centred_and_edge_to_edge() -> None:
    # An "L": down the left side, then along the bottom, twice as wide as tall.
    image = render_strokes([np.array([[0, 0], [0, 10]]), np.array([[0, 10], [20, 10]])])
    top, bottom, left, right = ink_box(image)
    assert (left, right) == (5, 250)  # the longer side spans the CROHME core margins
    assert abs((top + bottom) / 2 - 127.5) <= 1  # centred on the shorter side
    assert (image[bottom - 1, left:right] < DARK).all()  # the bar is at the bottom: y is down
    assert (image[top : bottom - 2, right] >= DARK).all()  # nothing up the right side
    assert image[0].min() == image[:, 0].min() == 255


def test_a_dot_is_drawn_and_centred() -> None:
    for strokes in ([[[7.0, 9.0]]], [[[7.0, 9.0], [7.0, 9.0]]]):
        image = render_strokes(parse_strokes_json(strokes))
        top, bottom, left, right = ink_box(image)
        assert (bottom - top, right - left) == (1, 1)  # a 2x2 pen tip
        assert abs((top + bottom) / 2 - 127.5) <= 1 and abs((left + right) / 2 - 127.5) <= 1


def test_other_sizes_and_pens() -> None:
    strokes = [np.array([[0.0, 0.0], [30.0, 12.0]])]
    small = render_strokes(strokes, size=64, margin=2, line_width=1)
    assert small.shape == (64, 64) and small.dtype == np.uint8
    assert ink_box(small)[2:].tolist() == [2, 61]


def test_nothing_to_draw_is_blank_input() -> None:
    with pytest.raises(BlankInputError):
        render_strokes([])
    with pytest.raises(BlankInputError):
        render_strokes([np.empty((0, 2))])


def test_non_finite_points_are_refused() -> None:
    with pytest.raises(StrokesError, match="NaN or infinite"):
        render_strokes([np.array([[0.0, 0.0], [np.nan, 1.0]])])
