"""Training's image path: strokes drawn as an upload might look, then read back by the
serving preprocessing, seeded like the rest of the augmentation."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = (
    pytest.importorskip("torch", reason="needs the training extra")
    if not os.environ.get("CI")
    else __import__("torch")
)

from inktex.ink import read_inkml  # noqa: E402
from inktex.inputs import from_image  # noqa: E402
from inktex.render import render_strokes  # noqa: E402
from training import photo  # noqa: E402
from training.data import ExpressionDataset, load_split  # noqa: E402
from training.prepare import TINY_INPUT, prepare, tiny_corpus  # noqa: E402
from training.presets import resolve  # noqa: E402

pytestmark = pytest.mark.torch
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "inkml"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    prepare(tiny_corpus(tmp_path_factory.mktemp("corpus")), out, TINY_INPUT, splits=("train",))
    return load_split(out / "train.npz")


def test_a_random_photo_is_seeded_and_varied() -> None:
    strokes = read_inkml(FIXTURES / "518_em_425.inkml").strokes
    photos = [photo.random_photo(strokes, np.random.default_rng([7, k])) for k in range(40)]
    again = photo.random_photo(strokes, np.random.default_rng([7, 0]))
    np.testing.assert_array_equal(photos[0], again)
    assert all(p.dtype == np.uint8 and p.ndim == 2 for p in photos)
    sides = {p.shape for p in photos}
    assert (256, 256) in sides and len(sides) > 5  # the corpus's size, and others
    inverted = [np.median(p) < 128 for p in photos]
    assert 0 < sum(inverted) < 20  # some light ink on dark paper, most not


def test_the_corpus_png_and_its_rendering_read_alike() -> None:
    """`random_photo` at its plainest is the corpus's own offline style."""
    strokes = read_inkml(FIXTURES / "518_em_425.inkml").strokes
    png = from_image((FIXTURES / "518_em_425.png").read_bytes(), TINY_INPUT)
    out = io.BytesIO()
    Image.fromarray(render_strokes(strokes)).save(out, "PNG")
    drawn = from_image(out.getvalue(), TINY_INPUT)
    assert drawn.shape == png.shape
    assert np.abs(drawn - png).mean() < 0.05


def test_the_photo_share_goes_through_the_image_path(split) -> None:
    strokes = ExpressionDataset(split, TINY_INPUT, seed=3)
    photos = ExpressionDataset(split, TINY_INPUT, seed=3, photo_prob=1.0)
    half = ExpressionDataset(split, TINY_INPUT, seed=3, photo_prob=0.5)
    read_as_image = []
    for epoch in range(6):
        for i in range(len(split)):
            x = photos[(epoch, i)][0]
            np.testing.assert_array_equal(x, photos[(epoch, i)][0])  # seeded
            clean = strokes[(epoch, i)][0]
            assert not np.array_equal(x, clean)
            # The scale estimated from the image's ink is near the strokes' own.
            assert 0.5 < x.shape[0] / clean.shape[0] < 2
            read_as_image.append(not np.array_equal(half[(epoch, i)][0], clean))
    assert 0 < sum(read_as_image) < len(read_as_image)


def test_the_photo_share_is_a_training_setting() -> None:
    assert resolve("tiny").photo_prob == 0.0
    assert resolve("gpu", {"photo_prob": "0.4"}).photo_prob == 0.4


def test_the_corpus_style_draws_no_dots() -> None:
    """The corpus's PNGs leave out one-point marks (the dot of an i, of a \\div)."""
    bar, dot = np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([[5.0, 5.0]])
    kept = photo.without_dots([bar, dot, dot])
    assert len(kept) == 1 and kept[0] is bar
    assert len(photo.without_dots([dot])) == 1  # a drawing that is one dot keeps it
