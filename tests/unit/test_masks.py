"""Inputs of different sizes together: an input decoded alone and decoded padded inside a
batch give the same tokens and probabilities; augmentation is the same under the same seed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = (
    pytest.importorskip("torch", reason="needs the training extra")
    if not os.environ.get("CI")
    else __import__("torch")
)

from inktex.preprocess import pad_batch  # noqa: E402
from inktex.vocab import Vocabulary  # noqa: E402
from training.augment import StrokeAugment  # noqa: E402
from training.data import ExpressionDataset, SizeBatchSampler  # noqa: E402
from training.decoding import recognize_batch  # noqa: E402
from training.model import (  # noqa: E402
    WIDTHS,
    MaskedGroupNorm,
    ModelConfig,
    Recognizer,
    init_weights,
)
from training.prepare import TINY_INPUT, prepare, tiny_corpus  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    prepare(tiny_corpus(tmp_path_factory.mktemp("corpus")), out, TINY_INPUT, splits=("train",))
    return out


def untrained(arch: str, vocab: Vocabulary, norm: str = "batch") -> Recognizer:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=len(vocab), arch=arch, norm=norm, **WIDTHS["tiny"])
    model = Recognizer(cfg)
    init_weights(model)
    return model.eval()


def inputs(packed: Path) -> list[np.ndarray]:
    from training.data import load_split

    dataset = ExpressionDataset(load_split(packed / "train.npz"), TINY_INPUT)
    return [dataset[(0, i)][0].astype(np.float32) / 255 for i in range(len(dataset))]


@pytest.mark.parametrize("norm", ["batch", "group"])
@pytest.mark.parametrize("arch", ["dense", "seed"])
def test_an_input_alone_and_padded_in_a_batch_decode_alike(
    packed: Path, arch: str, norm: str
) -> None:
    vocab = Vocabulary.load(packed / "vocab.json")
    model = untrained(arch, vocab, norm)
    images = inputs(packed)
    assert len({x.shape for x in images}) == len(images)  # all different sizes
    batch, mask = pad_batch(images)
    together = recognize_batch(
        model,
        torch.from_numpy(batch)[:, None],
        vocab,
        beam=3,
        max_len=12,
        mask=torch.from_numpy(mask)[:, None],
    )
    for image, in_batch in zip(images, together, strict=True):
        alone = recognize_batch(model, torch.from_numpy(image)[None, None], vocab, 3, 12)[0]
        assert alone.best.ids == in_batch.best.ids
        np.testing.assert_allclose(
            np.exp(alone.best.token_logprobs), np.exp(in_batch.best.token_logprobs), atol=1e-5
        )


@pytest.mark.parametrize("arch", ["dense", "seed"])
def test_group_norm_trains_on_a_batch_as_it_serves_each_input_alone(
    packed: Path, arch: str
) -> None:
    vocab = Vocabulary.load(packed / "vocab.json")
    model = untrained(arch, vocab, "group")
    assert not list(model.encoder.buffers())  # no running statistics to drift
    images = inputs(packed)
    batch, mask = pad_batch(images)
    with torch.no_grad():
        features, feature_mask = model.train().encode(
            torch.from_numpy(batch)[:, None], torch.from_numpy(mask)[:, None]
        )
        model.eval()
        for i, image in enumerate(images):
            alone, _ = model.encode(torch.from_numpy(image)[None, None])
            h, w = alone.shape[2:]
            assert feature_mask[i, 0].sum() == h * w
            torch.testing.assert_close(features[i, :, :h, :w], alone[0], atol=1e-5, rtol=0)


def test_masked_group_norm_is_group_norm_over_the_unpadded_pixels() -> None:
    torch.manual_seed(0)
    norm = MaskedGroupNorm(24)  # 24 channels: 8 groups of 3
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    reference = torch.nn.GroupNorm(8, 24)
    reference.load_state_dict(norm.state_dict())
    x = torch.randn(2, 24, 6, 10) * 3 + 1
    mask = torch.ones(2, 1, 6, 10)
    mask[1, :, 4:] = 0
    mask[1, :, :, 7:] = 0
    out = norm(x, mask)
    torch.testing.assert_close(out[0], reference(x[:1])[0])
    torch.testing.assert_close(out[1, :, :4, :7], reference(x[1:, :, :4, :7])[0])
    # the padding comes out as a zero pixel of the input would: finite, whatever it held
    groups = x[1, :, :4, :7].reshape(8, -1)
    zero = -groups.mean(1) / torch.sqrt(groups.var(1, unbiased=False) + norm.eps)
    expected = (zero.repeat_interleave(3) * norm.weight + norm.bias)[:, None]
    huge = x.clone()
    huge[1, :, 4:] = 1e30
    torch.testing.assert_close(norm(huge, mask)[1, :, 4:].flatten(1), expected.expand(-1, 20))
    assert MaskedGroupNorm(12).groups == 6 and MaskedGroupNorm(44).groups == 4


def test_augmentation_is_the_same_under_the_same_seed(packed: Path) -> None:
    from training.data import load_split

    split = load_split(packed / "train.npz")
    same = [ExpressionDataset(split, TINY_INPUT, StrokeAugment(), seed=3) for _ in range(2)]
    other_seed = ExpressionDataset(split, TINY_INPUT, StrokeAugment(), seed=4)
    for i in range(len(split)):
        first = same[0][(1, i)][0]
        np.testing.assert_array_equal(first, same[1][(1, i)][0])  # same seed and epoch
        assert not np.array_equal(first, same[0][(2, i)][0])  # another epoch
        assert not np.array_equal(first, other_seed[(1, i)][0])  # another seed


def test_augmentation_rate_leaves_the_rest_as_written(packed: Path) -> None:
    from training.data import load_split

    split = load_split(packed / "train.npz")
    clean = ExpressionDataset(split, TINY_INPUT)
    never = ExpressionDataset(split, TINY_INPUT, StrokeAugment(input_prob=0.0), seed=3)
    half = ExpressionDataset(split, TINY_INPUT, StrokeAugment(input_prob=0.5), seed=3)
    as_written = []
    for epoch in range(8):
        for i in range(len(split)):
            np.testing.assert_array_equal(never[(epoch, i)][0], clean[(0, i)][0])
            as_written.append(np.array_equal(half[(epoch, i)][0], clean[(0, i)][0]))
    assert 0 < sum(as_written) < len(as_written)  # some inputs rewritten, some not


def test_size_batches_cover_every_input_once_per_epoch(packed: Path) -> None:
    shapes = [(32, 64)] * 10 + [(64, 512)] * 3
    sampler = SizeBatchSampler(shapes, list(range(13)), pixels=64 * 512, max_batch=4, seed=0)
    batches = sampler.batches(0)
    assert sorted(i for b in batches for i in b) == list(range(13))
    assert all(len(b) <= 4 for b in batches)
    assert sampler.batches(0) == batches and sampler.batches(1) != batches
    halves = [SizeBatchSampler(shapes, list(range(13)), 64 * 512, 4, 0, r, 2) for r in (0, 1)]
    assert len(halves[0].batches(0)) == len(halves[1].batches(0))
