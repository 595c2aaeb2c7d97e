"""The Transformer decoder exported with its key/value cache and served by the runtime: the
export's parity check, and the runtime's greedy and beam (rescored both ways) against the
PyTorch step model's, on a tiny Transformer trained both ways until it reads the five
fixture expressions (`tests/fixtures/build_knows_fixtures.py --decoder transformer`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = (
    pytest.importorskip("torch", reason="needs the training extra")
    if not os.environ.get("CI")
    else __import__("torch")
)

from inktex import inputs  # noqa: E402
from inktex.preprocess import pad_batch  # noqa: E402
from inktex.runtime import OnnxRecognizer  # noqa: E402
from inktex.transformer_runtime import TransformerStepModel  # noqa: E402
from model_export.export import LOGIT_TOLERANCE, export_package, verify_against_torch  # noqa: E402
from training.checkpoint import load_checkpoint  # noqa: E402
from training.decoding import recognize_batch  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "tests" / "fixtures" / "knows_fixtures_transformer.pt"


@pytest.fixture(scope="module")
def one_thread():
    """PyTorch on one thread: two would wait on each other on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_thread):
    return load_checkpoint(CHECKPOINT)


@pytest.fixture(scope="module")
def samples(trained, fixtures) -> list[np.ndarray]:
    """The fixtures' strokes as the model reads them: five inputs of different sizes."""
    pre = trained[2]
    found = [inputs.from_path(p, pre) for p in sorted((fixtures / "inkml").glob("*.inkml"))]
    assert len({x.shape for x in found}) > 1
    return found


@pytest.fixture(scope="module")
def package(trained, samples, tmp_path_factory):
    return export_package(CHECKPOINT, tmp_path_factory.mktemp("t") / "package", samples)


def test_the_export_holds_its_parity_check_and_describes_the_decoder(trained, samples, package):
    model = trained[0]
    report = verify_against_torch(model, package, samples)
    assert report["max_logprob_diff"] <= LOGIT_TOLERANCE
    assert report["greedy_identical"] == report["samples"] == len(samples)
    settings = json.loads((package.path / "model.json").read_text())
    assert settings["decoder"] == "transformer" and settings["bidirectional"] is True
    assert "Transformer decoder" in (package.path / "MODEL_CARD.md").read_text()
    recognizer = OnnxRecognizer(package)
    assert recognizer.bidirectional and recognizer.reads_cache
    assert recognizer.read_session is not None  # the rescoring reads through its own graph
    # the greedy path is long enough for the check to mean something: whole expressions
    images, mask = pad_batch(samples)
    assert min(len(r.best.ids) for r in recognizer.search(images, beam=1, mask=mask)) >= 3


@pytest.mark.parametrize("beam", [1, 4])
def test_the_runtime_decodes_as_the_pytorch_step_model_does(trained, samples, package, beam):
    model, vocab, _, _ = trained
    images, mask = pad_batch(samples)
    x, m = torch.from_numpy(images)[:, None], torch.from_numpy(mask)[:, None]
    expected = recognize_batch(model, x, vocab, beam=beam, mask=m, bidirectional=True)
    recognizer = OnnxRecognizer(package)
    for _ in range(2):  # the second search reuses the first one's bound buffers
        found = recognizer.search(images, beam=beam, mask=mask)
        assert [[h.ids for h in r.hypotheses] for r in found] == [
            [h.ids for h in r.hypotheses] for r in expected
        ]
        for a, b in zip(found, expected, strict=True):
            assert [h.score for h in a.hypotheses] == pytest.approx(
                [h.score for h in b.hypotheses], abs=1e-4
            )
            rescored = [h.right_to_left is not None for h in a.hypotheses]
            assert all(rescored) if beam > 1 else not any(rescored)
    one_by_one = [recognizer.search(x[None], beam=beam)[0].best.ids for x in samples]
    assert one_by_one == [r.best.ids for r in expected]


def test_the_read_graph_reads_as_the_step_graph_does(package, samples):
    """Teacher forcing in one call gives each step's log-probabilities, in padded rows too."""
    images, mask = pad_batch(samples)
    steps = OnnxRecognizer(package).step_model(images, mask)
    assert isinstance(steps, TransformerStepModel) and steps.read_all is not None
    vocab = package.vocab
    rng = np.random.default_rng(0)
    tokens = rng.integers(len(vocab.tokens) - 20, len(vocab.tokens), (len(samples), 6))
    tokens[:, 0] = vocab.eos_id  # as the rescoring reads: right to left, from <eos>
    index = np.arange(len(samples))[::-1].copy()  # each row may read another input
    read = steps.read_all(tokens, index)
    state = steps.select(steps.start(), index)
    for t in range(tokens.shape[1]):
        logp, state = steps.step(tokens[:, t], state)
        assert np.abs(read[:, t] - logp).max() <= LOGIT_TOLERANCE


def test_a_state_is_valid_for_the_next_call_only(package, samples):
    steps = OnnxRecognizer(package).step_model(samples[0][None])
    assert isinstance(steps, TransformerStepModel)
    token = np.array([package.vocab.sos_id])
    first = steps.start()
    _, second = steps.step(token, first)
    _, third = steps.step(token, second)
    assert len(third.cache) == 2  # two tokens' keys and values
    with pytest.raises(RuntimeError, match="next call only"):
        steps.step(token, second)
    # the search's own arrays (a start, a selection of an older state) are always valid
    again, _ = steps.step(token, steps.select(first, np.array([0])))
    assert np.isfinite(again).all()
