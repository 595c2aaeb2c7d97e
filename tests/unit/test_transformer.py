"""The Transformer decoder: one step at a time gives what teacher forcing gives, an input
reads the same alone or padded in a batch, and labels reverse for the right-to-left reading."""

from __future__ import annotations

import os

import pytest

torch = (
    pytest.importorskip("torch", reason="needs the training extra")
    if not os.environ.get("CI")
    else __import__("torch")
)

from inktex.vocab import Vocabulary  # noqa: E402
from training.model import WIDTHS, ModelConfig, Recognizer, init_weights  # noqa: E402
from training.train import right_to_left  # noqa: E402

pytestmark = pytest.mark.torch
VOCAB = 40


def model(decoder: str) -> Recognizer:
    torch.manual_seed(0)
    net = Recognizer(ModelConfig(vocab_size=VOCAB, decoder=decoder, **WIDTHS["tiny"]))
    init_weights(net)
    return net.eval()


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two inputs, the second padded to the first's width (paper is 0), and their tokens."""
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(2, 1, 48, 128, generator=generator)
    mask = torch.ones_like(images)
    mask[1, :, :, 80:] = 0
    tokens = torch.randint(4, VOCAB, (2, 9), generator=generator)
    tokens[:, 0] = 1  # <sos>
    return images * mask, mask, tokens


@pytest.mark.parametrize("decoder", ["gru", "transformer"])
def test_steps_give_what_teacher_forcing_gives(decoder: str) -> None:
    net, (images, mask, tokens) = model(decoder), batch()
    with torch.no_grad():
        forced = net(images, tokens, mask)
        features, feature_mask = net.encode(images, mask)
        memory, state = net.decoder.start(features, feature_mask)
        steps = []
        for t in range(tokens.shape[1]):
            logits, state, alpha = net.decoder.step(
                tokens[:, t], state, features, memory, feature_mask
            )  # type: ignore[arg-type]
            steps.append(logits)
            assert torch.allclose(alpha.sum(dim=(2, 3)), torch.ones(2, 1), atol=1e-5)
            assert (alpha * (1 - feature_mask)).abs().max() == 0  # nothing on the padding
    torch.testing.assert_close(torch.stack(steps, dim=1), forced, atol=1e-5, rtol=0)


def test_an_input_reads_the_same_alone_as_padded_in_a_batch() -> None:
    net, (images, mask, tokens) = model("transformer"), batch()
    with torch.no_grad():
        together = net(images, tokens, mask)[1]
        alone = net(images[1:, :, :, :80], tokens[1:])[0]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=0)


def test_the_state_follows_the_rows_a_beam_selects() -> None:
    net, (images, mask, tokens) = model("transformer"), batch()
    with torch.no_grad():
        features, feature_mask = net.encode(images, mask)
        memory, state = net.decoder.start(features, feature_mask)
        for t in range(3):
            _, state, _ = net.decoder.step(tokens[:, t], state, features, memory, feature_mask)
        rows = torch.tensor([1, 1, 0])
        picked = state.select(rows)
        logits, _, _ = net.decoder.step(
            tokens[rows, 3], picked, features[rows], memory[rows], feature_mask[rows]
        )
        expected = net(images, tokens[:, :4], mask)[:, 3]
    torch.testing.assert_close(logits, expected[rows], atol=1e-5, rtol=0)


def test_labels_reverse_for_the_right_to_left_reading() -> None:
    vocab = Vocabulary(["<pad>", "<sos>", "<eos>", "<unk>", "a", "b", "c"])
    a, b, c, eos, sos, pad = 4, 5, 6, vocab.eos_id, vocab.sos_id, vocab.pad_id
    targets = torch.tensor([[a, b, c, eos], [c, eos, pad, pad], [eos, pad, pad, pad]])
    lengths = torch.tensor([4, 2, 1])
    expected = torch.tensor([[c, b, a, sos], [c, sos, pad, pad], [sos, pad, pad, pad]])
    assert torch.equal(right_to_left(targets, lengths, vocab), expected)


def test_an_unknown_decoder_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown decoder"):
        Recognizer(ModelConfig(vocab_size=VOCAB, decoder="lstm"))
