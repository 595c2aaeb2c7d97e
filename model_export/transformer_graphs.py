"""The Transformer decoder's two ONNX graphs: the encoder with every layer's memory, and one
decoder step with a key/value cache.

The step runs `TransformerDecoder.step` itself (one decoder, written once), on a state
unpacked from three tensors:

- `cache` (t, rows, 2 x layers, heads, k): every layer's self-attention keys and values of the
  t tokens so far, time first. Time first, the first t entries of a buffer of any capacity
  are one contiguous block, so the runtime binds a growing prefix of one preallocated buffer
  and the graph never copies the cache out: it returns only the new token's keys and values
  (`cache_new`, rows x 2 x layers x heads x k), which the runtime's binding writes at
  position t. The token's position is t, read from the cache's shape (t = 0 at <sos>).
- `coverage` (rows, layers, heads, h, w): each head's attention summed over past steps.
- `memory` (rows, 2 x layers, heads, L, k) and `feature_mask` (rows, 1, h, w): the encoder
  graph's outputs, one copy per row.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from training.model import STRIDE, Recognizer, mask_at
from training.transformer import TransformerState

ENCODER_OUTPUTS = ["memory", "feature_mask"]
STEP_INPUTS = ["token", "cache", "coverage", "memory", "feature_mask"]
STEP_OUTPUTS = ["log_probs", "cache_new", "coverage_out"]


class TransformerEncoderGraph(nn.Module):
    """image and its mask (B, 1, H, W) -> every layer's keys and values of the grid
    (B, 2 x layers, heads, L, k), computed once per image, and the features' mask."""

    def __init__(self, model: Recognizer, body: nn.Sequential):
        super().__init__()
        self.model = model
        self.body = body  # the encoder's layers as the GRU export rearranges them

    def forward(self, image: torch.Tensor, mask: torch.Tensor):
        features = self.model.encoder(image, mask, body=self.body)
        feature_mask = mask_at(mask, STRIDE)
        memory, _ = self.model.decoder.start(features, feature_mask)
        return memory, feature_mask


class TransformerStepGraph(nn.Module):
    """One decoder step for N rows; row i reads row i of the encoder's outputs."""

    def __init__(self, model: Recognizer):
        super().__init__()
        self.decoder = model.decoder
        self.layers = len(self.decoder.layers)

    def forward(self, token, cache, coverage, memory, feature_mask):
        past = cache.permute(1, 2, 3, 0, 4)  # (rows, 2 x layers, heads, t, k)
        n = self.layers
        state = TransformerState(
            [past[:, 2 * i] for i in range(n)],
            [past[:, 2 * i + 1] for i in range(n)],
            [coverage[:, i] for i in range(n)],
        )
        logits, new, _ = self.decoder.step(token, state, None, memory, feature_mask)
        last = [s[:, :, -1] for i in range(n) for s in (new.keys[i], new.values[i])]
        return (
            torch.log_softmax(logits, dim=-1),
            torch.stack(last, dim=1),  # (rows, 2 x layers, heads, k): position t's entry
            torch.stack(new.coverage, dim=1),
        )


def export_transformer_graphs(model: Recognizer, body: nn.Sequential, out: Path, export) -> None:
    """Both graphs into `out` through `export(module, args, path, inputs, outputs, axes)`."""
    from inktex.package import ENCODER_FILE, STEP_FILE

    image = torch.rand(2, 1, 64, 128)  # any size: the axes are dynamic
    mask = torch.ones_like(image)
    mask[1, :, :, 64:] = 0  # the second input is padded
    encoder = TransformerEncoderGraph(model, body)
    with torch.no_grad():
        memory, feature_mask = encoder(image, mask)
    export(
        encoder,
        (image, mask),
        out / ENCODER_FILE,
        ["image", "mask"],
        ENCODER_OUTPUTS,
        {
            "image": {0: "batch", 2: "height", 3: "width"},
            "mask": {0: "batch", 2: "height", 3: "width"},
            "memory": {0: "batch", 3: "grid"},
            "feature_mask": {0: "batch", 2: "h", 3: "w"},
        },
    )
    rows, dec = 2, model.decoder
    _, layers2, heads, _, k = memory.shape
    grid = feature_mask.shape[2:]
    step_args = (
        torch.ones(rows, dtype=torch.long),
        torch.rand(3, rows, layers2, heads, k),  # 3 tokens so far: t is dynamic, 0 included
        torch.rand(rows, len(dec.layers), heads, *grid) / 10,
        memory,
        feature_mask,
    )
    with warnings.catch_warnings():
        # Self-attention masks the future only for several tokens at once (`t_q > 1`); a
        # step reads one, so the trace's constant False is right for every input.
        warnings.filterwarnings("ignore", "Converting a tensor to a Python boolean")
        _export_step(export, model, step_args, out / STEP_FILE)


def _export_step(export, model: Recognizer, step_args: tuple, path: Path) -> None:
    export(
        TransformerStepGraph(model),
        step_args,
        path,
        STEP_INPUTS,
        STEP_OUTPUTS,
        {
            "token": {0: "rows"},
            "cache": {0: "t", 1: "rows"},
            "coverage": {0: "rows", 3: "h", 4: "w"},
            "memory": {0: "rows", 3: "grid"},
            "feature_mask": {0: "rows", 2: "h", 3: "w"},
            "log_probs": {0: "rows"},
            "cache_new": {0: "rows"},
            "coverage_out": {0: "rows", 3: "h", 4: "w"},
        },
    )
