"""The PyTorch decoder as a `StepModel` for the core's search (validation, PyTorch evaluation)."""

from __future__ import annotations

import numpy as np
import torch

from inktex.preprocess import pad_batch, size_batches
from inktex.search import SearchResult, decode
from inktex.vocab import Vocabulary
from training.model import Recognizer


class TorchStepModel:
    """Encodes a batch once; each step runs the decoder on the model's device."""

    def __init__(self, model: Recognizer, images: torch.Tensor, mask: torch.Tensor | None):
        self.model = model
        self.features, self.mask = model.encode(images, mask)
        self.keys, self.state0 = model.decoder.start(self.features, self.mask)
        self.device = self.features.device

    def start(self):
        return (self.state0, self.features, self.keys, self.mask)

    def step(self, tokens: np.ndarray, state):
        decoder_state, features, keys, mask = state
        ids = torch.from_numpy(tokens).to(self.device)
        logits, new, _ = self.model.decoder.step(ids, decoder_state, features, keys, mask)  # type: ignore[arg-type]
        logp = torch.log_softmax(logits.float(), dim=-1)
        return logp.cpu().numpy(), (new, features, keys, mask)

    def select(self, state, rows: np.ndarray):
        idx = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
        decoder_state, *encoded = state
        return (decoder_state.select(idx), *(t.index_select(0, idx) for t in encoded))


@torch.inference_mode()
def recognize_batch(
    model: Recognizer,
    images: torch.Tensor,
    vocab: Vocabulary,
    beam: int = 1,
    max_len: int = 200,
    mask: torch.Tensor | None = None,
    bidirectional: bool = False,
) -> list[SearchResult]:
    """Search results for images (B, 1, H, W) (and their mask) on the model's device; a
    model trained both ways (`bidirectional`) has its beam rescored right to left."""
    steps = TorchStepModel(model, images, mask)
    return decode(steps, len(images), vocab, max_len, beam, bidirectional=bidirectional)


def recognize_arrays(
    model: Recognizer,
    images: list[np.ndarray],
    vocab: Vocabulary,
    device: torch.device,
    beam: int = 1,
    batch_pixels: int = 2_000_000,
    max_len: int = 200,
    amp: bool = False,
    bidirectional: bool = False,
) -> list[list[str]]:
    """Token lists for model inputs of any sizes (uint8 or float (H, W) arrays), decoded in
    padded batches of similar size, returned in the inputs' order."""
    out: list[list[str]] = [[] for _ in images]
    model.eval()
    shapes = [x.shape for x in images]
    for batch in size_batches(shapes, batch_pixels, 128):
        arrays = [np.asarray(images[i], dtype=np.float32) for i in batch]
        if images[batch[0]].dtype == np.uint8:
            arrays = [a / 255 for a in arrays]
        padded, mask = pad_batch(arrays)
        x = torch.from_numpy(padded).to(device)[:, None]
        m = torch.from_numpy(mask).to(device)[:, None]
        with torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"
        ):
            results = recognize_batch(model, x, vocab, beam, max_len, m, bidirectional)
        for i, r in zip(batch, results, strict=True):
            out[i] = vocab.decode(r.best.ids)
    return out


class TorchRecognizer:
    """A PyTorch checkpoint behind the evaluation protocol's `Recognizer` interface."""

    def __init__(self, checkpoint, device: str | None = None, beam: int = 1):
        from training.checkpoint import load_checkpoint

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.vocab, self.preprocess, payload = load_checkpoint(checkpoint, self.device)
        self.beam = beam
        self.bidirectional = bool(payload.get("train_config", {}).get("bidirectional"))

    def recognize_paths(self, paths) -> list[list[str]]:
        from inktex import inputs

        batch = [inputs.from_path(p, self.preprocess) for p in paths]
        return recognize_arrays(
            self.model,
            batch,
            self.vocab,
            self.device,
            beam=self.beam,
            bidirectional=self.bidirectional,
        )
