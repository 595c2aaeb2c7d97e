"""Checkpoint averaging: the mean of the weights, refused across different models."""

from __future__ import annotations

import os

import pytest

torch = (
    pytest.importorskip("torch", reason="needs the training extra")
    if not os.environ.get("CI")
    else __import__("torch")
)

from inktex.preprocess import PreprocessConfig  # noqa: E402
from inktex.vocab import SPECIALS, Vocabulary  # noqa: E402
from training.average import average_state_dicts, main  # noqa: E402
from training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from training.train import build_model  # noqa: E402

pytestmark = pytest.mark.torch
VOCAB = Vocabulary([*SPECIALS, "x", "+", "1"])


def tiny_checkpoint(path, seed: int, arch: str = "dense"):
    torch.manual_seed(seed)
    model = build_model({"model": {"arch": arch, "width": "tiny"}}, VOCAB, torch.device("cpu"))
    save_checkpoint(path, model, VOCAB, PreprocessConfig())
    return model


def test_floats_are_averaged_and_counters_come_from_the_last():
    first = {"w": torch.tensor([1.0, 2.0]), "count": torch.tensor(3)}
    second = {"w": torch.tensor([3.0, 6.0]), "count": torch.tensor(7)}
    averaged = average_state_dicts([first, second])
    assert torch.equal(averaged["w"], torch.tensor([2.0, 4.0]))
    assert averaged["count"].item() == 7


def test_different_parameters_are_refused():
    with pytest.raises(ValueError, match="different parameters"):
        average_state_dicts([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])
    with pytest.raises(ValueError, match="nothing to average"):
        average_state_dicts([])


def test_the_command_writes_a_checkpoint_with_the_mean_weights(tmp_path, capsys):
    models = [tiny_checkpoint(tmp_path / f"{seed}.pt", seed) for seed in (1, 2, 3)]
    main([str(tmp_path / f"{seed}.pt") for seed in (1, 2, 3)] + ["--out", str(tmp_path / "m.pt")])
    assert "averaged 3 checkpoints" in capsys.readouterr().out
    averaged, vocab, _, _ = load_checkpoint(tmp_path / "m.pt")
    assert vocab.tokens == VOCAB.tokens
    name, weight = next(
        (k, v) for k, v in averaged.state_dict().items() if v.is_floating_point() and v.ndim > 1
    )
    expected = sum(m.state_dict()[name] for m in models) / 3
    torch.testing.assert_close(weight, expected)


def test_checkpoints_of_different_architectures_are_refused(tmp_path):
    tiny_checkpoint(tmp_path / "dense.pt", 0, "dense")
    tiny_checkpoint(tmp_path / "seed.pt", 0, "seed")
    with pytest.raises(ValueError):
        main([str(tmp_path / "dense.pt"), str(tmp_path / "seed.pt"), "--out", str(tmp_path / "x")])
