"""The PyTorch decoder as a `StepModel` for the core's search (validation, PyTorch evaluation)."""

from __future__ import annotations

import numpy as np
import torch

from inktex.search import SearchResult, decode
from inktex.vocab import Vocabulary
from training.model import Recognizer


class TorchStepModel:
    """Encodes a batch once; each step runs the decoder on the model's device."""

    def __init__(self, model: Recognizer, images: torch.Tensor):
        self.model = model
        self.features = model.encoder(images)
        self.keys, self.state0 = model.decoder.start(self.features)

    def start(self):
        return (self.state0.hidden, self.state0.coverage, self.features, self.keys)

    def step(self, tokens: np.ndarray, state):
        hidden, coverage, features, keys = state
        from training.model import DecoderState

        ids = torch.from_numpy(tokens).to(hidden.device)
        logits, new, _ = self.model.decoder.step(
            ids, DecoderState(hidden, coverage), features, keys
        )
        logp = torch.log_softmax(logits.float(), dim=-1)
        return logp.cpu().numpy(), (new.hidden, new.coverage, features, keys)

    def select(self, state, rows: np.ndarray):
        idx = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(state[0].device)
        return tuple(s.index_select(0, idx) for s in state)


@torch.inference_mode()
def recognize_batch(
    model: Recognizer, images: torch.Tensor, vocab: Vocabulary, beam: int = 1, max_len: int = 200
) -> list[SearchResult]:
    """Search results for images (B, 1, H, W) already on the model's device."""
    return decode(TorchStepModel(model, images), len(images), vocab, max_len, beam)


def recognize_arrays(
    model: Recognizer,
    images: np.ndarray,
    vocab: Vocabulary,
    device: torch.device,
    beam: int = 1,
    batch_size: int = 128,
    max_len: int = 200,
    amp: bool = False,
) -> list[list[str]]:
    """Token lists for uint8 (N, H, W) or float (N, H, W) model inputs."""
    out: list[list[str]] = []
    model.eval()
    for i in range(0, len(images), batch_size):
        chunk = torch.from_numpy(np.asarray(images[i : i + batch_size])).to(device)
        x = (chunk.float() / 255 if chunk.dtype == torch.uint8 else chunk.float())[:, None]
        with torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"
        ):
            results = recognize_batch(model, x, vocab, beam=beam, max_len=max_len)
        out += [vocab.decode(r.best.ids) for r in results]
    return out


class TorchRecognizer:
    """A PyTorch checkpoint behind the evaluation protocol's `Recognizer` interface."""

    def __init__(self, checkpoint, device: str | None = None, beam: int = 1):
        from training.checkpoint import load_checkpoint

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.vocab, self.preprocess, _ = load_checkpoint(checkpoint, self.device)
        self.beam = beam

    def recognize_paths(self, paths) -> list[list[str]]:
        from inktex import inputs

        batch = np.stack([inputs.from_path(p, self.preprocess) for p in paths])
        return recognize_arrays(self.model, batch, self.vocab, self.device, beam=self.beam)
