"""The Transformer decoder's two ONNX graphs: the encoder with every layer's memory, and one
decoder step with a key/value cache.

The step graph is `TransformerDecoder.step`'s arithmetic regrouped for ONNX Runtime, as the
GRU's `StepGraph` is: a step of a few rows costs the weights it reads plus a little per node,
and running the decoder as written spent 40% of a step on shape arithmetic, reshapes and
copies. So every reshape here has a constant shape (ONNX's 0 keeps a size, -1 infers one), the
cache and the grid's keys and values are read where they lie, and:

- the embedding's scale is in its table, and each query projection carries 1/sqrt(k);
- self-attention reads the time-first cache without permuting or extending it: the new token's
  logit and the past ones are computed apart, and the softmax runs over time (axis 0);
- the grid's keys come from the encoder graph transposed, (rows, heads, k, L), one input per
  layer, so a query's logits are one MatMul and no step slices or copies the memory;
- padding is an additive bias (0 or -inf) from the encoder graph, added once per layer: the
  refined logits inherit its -inf, as `masked_fill` would give them;
- the attention refinement of every layer runs first, as one grouped convolution: a single
  step's coverage before it is the coverage it is given, which no layer of this step changes;
  coverage stays in grid form, (rows, layers x heads, h, w).

Each change is exact in real arithmetic; `verify_against_torch` bounds the rounding.

Inputs: `token` (rows,); `cache` (t, rows, 2 x layers, heads, k), every layer's self-attention
keys and values of the t tokens so far, time first, so that the cache of t tokens is the first
t entries of a buffer of any capacity (the runtime binds that prefix; the token's position is
t, read from the cache's shape); `coverage`; `grid_bias` (rows, 1, 1, L); `keys_i` (rows,
heads, k, L) and `values_i` (rows, heads, L, k) for each layer i. Outputs: `log_probs`,
`cache_new` (1, rows, 2 x layers, heads, k), the new token's entry, which the runtime's binding
writes at position t, and `coverage_out`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from inktex.transformer_runtime import READ_FILE, TransformerStepModel
from training.model import STRIDE, Recognizer, mask_at
from training.transformer import TransformerState

STEP_OUTPUTS = ["log_probs", "cache_new", "coverage_out"]


def memory_names(layers: int) -> list[str]:
    """The encoder graph's per-layer outputs, which the step graph reads."""
    return [f"{kind}_{i}" for i in range(layers) for kind in ("keys", "values")]


def encoder_outputs(layers: int) -> list[str]:
    return [*memory_names(layers), "grid_bias", "feature_mask"]


def step_inputs(layers: int) -> list[str]:
    return ["token", "cache", "coverage", "grid_bias", *memory_names(layers)]


class _Reshape(torch.autograd.Function):
    """x reshaped as ONNX's Reshape reads a constant shape: 0 keeps that size, -1 infers one.
    Traced as written, a reshape to sizes that depend on the input becomes shape arithmetic."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(shape)])

    @staticmethod
    def symbolic(g, x, shape):
        return g.op("Reshape", x, g.op("Constant", value_t=torch.tensor(shape)))


class _ReshapeLike(torch.autograd.Function):
    """x reshaped to another tensor's shape: one Shape node."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.reshape(like.shape)

    @staticmethod
    def symbolic(g, x, like):
        return g.op("Reshape", x, g.op("Shape", like))


class _Length(torch.autograd.Function):
    """(1,) float: the size of x's first axis (the cache's tokens: the new token's position)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.full((1,), float(x.shape[0]))

    @staticmethod
    def symbolic(g, x):
        return g.op("Cast", g.op("Shape", x, start_i=0, end_i=1), to_i=1)  # 1: float


class TransformerEncoderGraph(nn.Module):
    """image and its mask (B, 1, H, W) -> each layer's keys (B, n, k, L) and values (B, n, L,
    k) of the grid, computed once per image, the padding bias (B, 1, 1, L) and the features'
    mask (B, 1, h, w)."""

    def __init__(self, model: Recognizer, body: nn.Sequential | None):
        super().__init__()
        self.model = model
        self.body = body  # the encoder's layers as the GRU export rearranges them

    def forward(self, image: torch.Tensor, mask: torch.Tensor):
        features = self.model.encoder(image, mask, body=self.body)
        feature_mask = mask_at(mask, STRIDE)
        memory, _ = self.model.decoder.start(features, feature_mask)  # (B, 2 x layers, n, L, k)
        bias = torch.zeros_like(feature_mask).masked_fill(feature_mask == 0, float("-inf"))
        outputs = []
        for i in range(memory.shape[1] // 2):
            outputs += [memory[:, 2 * i].transpose(-1, -2), memory[:, 2 * i + 1]]
        return (*outputs, bias.flatten(1)[:, None, None], feature_mask)


class TransformerStepGraph(nn.Module):
    """One decoder step for N rows; row i reads row i of the encoder's outputs."""

    def __init__(self, model: Recognizer):
        super().__init__()
        dec = model.decoder
        self.decoder = dec
        self.d, self.heads = dec.d, dec.heads
        self.k = dec.d // dec.heads
        arms = [layer.arm for layer in dec.layers]
        self.padding = arms[0].conv.padding
        half = self.d // 2
        with torch.no_grad():
            scale = 1 / math.sqrt(self.k)
            qkv_scale = torch.ones(3 * self.d, 1)
            qkv_scale[: self.d] = scale  # the query's rows
            self.register_buffer("token_table", dec.embedding.weight * math.sqrt(self.d))
            # sinusoid's frequencies, computed as it computes them
            freq = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10_000.0) / half))
            self.register_buffer("freq", freq)
            for i, layer in enumerate(dec.layers):
                self.register_buffer(f"qkv_weight_{i}", layer.qkv.weight * qkv_scale)
                self.register_buffer(f"qkv_bias_{i}", layer.qkv.bias * qkv_scale[:, 0])
                self.register_buffer(f"query_weight_{i}", layer.query.weight * scale)
                self.register_buffer(f"query_bias_{i}", layer.query.bias * scale)
            for name in ("conv", "proj"):
                convs = [getattr(arm, name) for arm in arms]
                self.register_buffer(f"arm_{name}_weight", torch.cat([c.weight for c in convs]))
                self.register_buffer(f"arm_{name}_bias", torch.cat([c.bias for c in convs]))

    def forward(self, token, cache, coverage, grid_bias, *memory):
        dec, d, n, k = self.decoder, self.d, self.heads, self.k
        layers = len(dec.layers)
        angles = _Length.apply(cache) * self.freq  # position t's sinusoid
        x = self.token_table[token] + torch.cat([angles.sin(), angles.cos()])  # (N, d)
        past = cache.split(1, dim=2)  # 2 x layers of (t, N, 1, n, k)
        # every layer's refinement at once: coverage (N, layers x n, h, w), groups of n heads
        hidden = F.relu(
            F.conv2d(coverage, self.arm_conv_weight, self.arm_conv_bias, 1, self.padding, 1, layers)
        )
        penalty = F.conv2d(hidden, self.arm_proj_weight, self.arm_proj_bias, groups=layers)
        penalties = _Reshape.apply(penalty, (0, layers * n, 1, -1)).split(n, dim=1)
        new, raws = [], []
        for i, layer in enumerate(dec.layers):
            # self-attention over the cache and the new token (their logits apart), time first
            qkv = F.linear(
                layer.norm_self(x), getattr(self, f"qkv_weight_{i}"), getattr(self, f"qkv_bias_{i}")
            )
            q, key, value = _Reshape.apply(qkv, (1, -1, 3, n, k)).split(1, dim=2)  # (1, N, 1, n, k)
            logits = torch.cat(
                [(q * key).sum(-1, keepdim=True), (past[2 * i] * q).sum(-1, keepdim=True)]
            )  # (1 + t, N, 1, n, 1)
            w = torch.softmax(logits, dim=0)
            out = w[:1] * value + (w[1:] * past[2 * i + 1]).sum(0, keepdim=True)
            x = x + layer.self_out(_Reshape.apply(out, (-1, d)))
            new += [key, value]
            # cross-attention over the grid, refined by the coverage's penalty
            query = F.linear(
                layer.norm_cross(x),
                getattr(self, f"query_weight_{i}"),
                getattr(self, f"query_bias_{i}"),
            )
            logits = (
                _Reshape.apply(query, (-1, n, 1, k)) @ memory[2 * i] + grid_bias
            )  # (N, n, 1, L)
            raws.append(torch.softmax(logits, dim=-1))
            alpha = torch.softmax(logits - penalties[i], dim=-1)
            x = x + layer.cross_out(_Reshape.apply(alpha @ memory[2 * i + 1], (-1, d)))
            x = layer.feed_forward(x)
        logits = dec.classifier(dec.out_norm(x))
        coverage_out = coverage + _ReshapeLike.apply(torch.cat(raws, dim=1), coverage)
        return torch.log_softmax(logits, dim=-1), torch.cat(new, dim=2), coverage_out


class TransformerReadGraph(nn.Module):
    """Teacher forcing from the start: log-probabilities (N, T, V) of the token after each of
    `tokens` (N, T), all T at once, as `TransformerDecoder.teacher_forced` computes them. The
    beam's rescoring reads its n-best right to left through this graph in one call instead of
    one step per token: each weight is read once for all N x T tokens. Inputs: `tokens`,
    `feature_mask` and the step graph's per-layer keys and values."""

    def __init__(self, model: Recognizer):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, tokens, feature_mask, *memory):
        dec = self.decoder
        grid = [m.transpose(-1, -2) if i % 2 == 0 else m for i, m in enumerate(memory)]
        empty = memory[1][:, :, :0]  # (N, n, 0, k): no tokens before
        coverage = (feature_mask * 0).expand(-1, dec.heads, -1, -1)
        layers = len(dec.layers)
        state = TransformerState([empty] * layers, [empty] * layers, [coverage] * layers)
        logits, _, _ = dec._run(tokens, state, torch.stack(grid, dim=1), feature_mask)
        return torch.log_softmax(logits, dim=-1)


def reading_difference(
    model: Recognizer,
    images: torch.Tensor,
    mask: torch.Tensor,
    steps: TransformerStepModel,
    sequences: list[list[int]],
    first: int,
) -> float:
    """Largest log-probability difference between the read graph and PyTorch's teacher forcing
    on `sequences` (one per input; `first` before each, shorter ones padded), over each
    sequence's own positions (what the rescoring scores)."""
    length = max(len(s) for s in sequences) + 1
    tokens = np.full((len(sequences), length), first, dtype=np.int64)
    for row, seq in enumerate(sequences):
        tokens[row, 1 : len(seq) + 1] = seq
    with torch.inference_mode():
        features, feature_mask = model.encode(images, mask)
        memory, state = model.decoder.start(features, feature_mask)
        logits = model.decoder.teacher_forced(
            torch.from_numpy(tokens), features, memory, feature_mask, state
        )
        expected = torch.log_softmax(logits, dim=-1).numpy()
    found = steps.read_all(tokens, np.arange(len(sequences)))
    return max(
        float(np.abs(found[row, : len(seq) + 1] - expected[row, : len(seq) + 1]).max())
        for row, seq in enumerate(sequences)
    )


def export_transformer_graphs(
    model: Recognizer, body: nn.Sequential | None, out: Path, export
) -> None:
    """Both graphs into `out` through `export(module, args, path, inputs, outputs, axes)`."""
    from inktex.package import ENCODER_FILE, STEP_FILE

    layers = len(model.decoder.layers)
    image = torch.rand(2, 1, 64, 128)  # any size: the axes are dynamic
    mask = torch.ones_like(image)
    mask[1, :, :, 64:] = 0  # the second input is padded
    encoder = TransformerEncoderGraph(model, body)
    with torch.no_grad():
        *memory, grid_bias, feature_mask = encoder(image, mask)
    grid_axes = {}
    for name in memory_names(layers):
        grid_axes[name] = {0: "rows", 3 if name.startswith("keys") else 2: "grid"}
    export(
        encoder,
        (image, mask),
        out / ENCODER_FILE,
        ["image", "mask"],
        encoder_outputs(layers),
        {
            "image": {0: "batch", 2: "height", 3: "width"},
            "mask": {0: "batch", 2: "height", 3: "width"},
            **grid_axes,
            "grid_bias": {0: "rows", 3: "grid"},
            "feature_mask": {0: "rows", 2: "h", 3: "w"},
        },
    )
    rows = 2
    _, heads, k, _ = memory[0].shape
    step_args = (
        torch.ones(rows, dtype=torch.long),
        torch.rand(3, rows, 2 * layers, heads, k),  # 3 tokens so far: t is dynamic, 0 included
        torch.rand(rows, layers * heads, *feature_mask.shape[2:]) / 10,
        grid_bias,
        *memory,
    )
    with warnings.catch_warnings():
        # `_Length` reads the cache's size, and its symbolic reads it in the graph; the read
        # graph masks the future for `t_q > 1` tokens, which with one token masks nothing.
        warnings.filterwarnings("ignore", "Converting a tensor to a Python")
        export(
            TransformerStepGraph(model),
            step_args,
            out / STEP_FILE,
            step_inputs(layers),
            STEP_OUTPUTS,
            {
                "token": {0: "rows"},
                "cache": {0: "t", 1: "rows"},
                "coverage": {0: "rows", 2: "h", 3: "w"},
                "grid_bias": {0: "rows", 3: "grid"},
                **grid_axes,
                "log_probs": {0: "rows"},
                "cache_new": {1: "rows"},
                "coverage_out": {0: "rows", 2: "h", 3: "w"},
            },
        )
        tokens = torch.ones(rows, 4, dtype=torch.long)  # any number of tokens, 1 included
        export(
            TransformerReadGraph(model),
            (tokens, feature_mask, *memory),
            out / READ_FILE,
            ["tokens", "feature_mask", *memory_names(layers)],
            ["log_probs"],
            {
                "tokens": {0: "rows", 1: "tokens"},
                "feature_mask": {0: "rows", 2: "h", 3: "w"},
                **grid_axes,
                "log_probs": {0: "rows", 1: "tokens"},
            },
        )
