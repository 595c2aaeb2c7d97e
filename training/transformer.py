"""The field's decoder: a Transformer whose cross-attention carries coverage.

Pre-norm decoder layers (causal self-attention, cross-attention over the encoder's grid, a
feed-forward block), as in BTTR (Zhao et al. 2021), with CoMER's attention refinement (Zhao
and Gao 2022): each layer sums its own attention over the steps before, convolves that
coverage over the grid and subtracts it from the attention's logits, so a head learns to move
on from what it has read. The sum is of the attention before refinement, which needs no
earlier step's output: teacher forcing computes every step at once (an exclusive cumulative
sum over time), and one step at a time gives the same numbers (`step`, the export's).

Trained in both directions (BTTR): left to right from <sos> to <eos>, and right to left over
the reversed tokens from <eos> to <sos>. The first token tells the decoder which way it reads.

Shapes: B batch, T tokens, L = h x w grid positions, d model width, n heads of size k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class TransformerState:
    """What a step needs of the steps before it, per layer."""

    keys: list[torch.Tensor]  # (B, n, t, k): self-attention keys of the tokens so far
    values: list[torch.Tensor]  # (B, n, t, k)
    coverage: list[torch.Tensor]  # (B, n, h, w): each head's attention summed over past steps

    def select(self, rows: torch.Tensor) -> TransformerState:
        def pick(xs: list[torch.Tensor]) -> list[torch.Tensor]:
            return [x.index_select(0, rows) for x in xs]

        return TransformerState(pick(self.keys), pick(self.values), pick(self.coverage))


def sinusoid(positions: torch.Tensor, channels: int) -> torch.Tensor:
    """(..., channels) sine and cosine codes of positions (...) at geometric frequencies."""
    half = channels // 2
    freq = torch.exp(
        torch.arange(half, device=positions.device, dtype=torch.float32)
        * (-math.log(10_000.0) / half)
    )
    angles = positions.float()[..., None] * freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def grid_positions(h: int, w: int, channels: int, device: torch.device) -> torch.Tensor:
    """(h * w, channels): half the channels code the row, half the column. Positions count
    cells from the top left, so an input reads the same alone or padded in a batch."""
    rows = sinusoid(torch.arange(h, device=device), channels // 2)  # (h, c/2)
    cols = sinusoid(torch.arange(w, device=device), channels // 2)  # (w, c/2)
    grid = torch.cat([rows[:, None].expand(h, w, -1), cols[None].expand(h, w, -1)], dim=-1)
    return grid.reshape(h * w, channels)


class AttentionRefinement(nn.Module):
    """Coverage (B*, n, h, w) -> a penalty (B*, n, h, w) on the attention's logits."""

    def __init__(self, heads: int, channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(heads, channels, kernel, padding=kernel // 2)
        self.proj = nn.Conv2d(channels, heads, 1)

    def forward(self, coverage: torch.Tensor) -> torch.Tensor:
        return self.proj(F.relu(self.conv(coverage)))


class DecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int, dropout: float, arm: AttentionRefinement):
        super().__init__()
        self.heads, self.k = heads, d // heads
        self.norm_self, self.norm_cross, self.norm_ffn = (nn.LayerNorm(d) for _ in range(3))
        self.qkv = nn.Linear(d, 3 * d)
        self.self_out = nn.Linear(d, d)
        self.query = nn.Linear(d, d)
        self.memory_kv = nn.Linear(d, 2 * d)
        self.cross_out = nn.Linear(d, d)
        self.arm = arm
        self.ffn = nn.Sequential(
            nn.Linear(d, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, d)
        )
        self.dropout = nn.Dropout(dropout)

    def heads_of(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, n, T, k)."""
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, self.k).transpose(1, 2)

    def merged(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n, T, k) -> (B, T, d)."""
        b, _, t, _ = x.shape
        return x.transpose(1, 2).reshape(b, t, self.heads * self.k)

    def memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The grid's keys and values (B, n, L, k), computed once per input."""
        keys, values = self.memory_kv(memory).chunk(2, dim=-1)
        return self.heads_of(keys), self.heads_of(values)

    def self_attention(
        self, x: torch.Tensor, past_k: torch.Tensor | None, past_v: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, d) attends to the past and to itself, causally; returns the output and
        the keys and values so far (the cache a step hands on)."""
        q, k, v = (self.heads_of(p) for p in self.qkv(self.norm_self(x)).chunk(3, dim=-1))
        if past_k is not None and past_v is not None:
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.k)  # (B, n, T, t)
        t_q, t_k = logits.shape[-2:]
        if t_q > 1:  # teacher forcing: a token sees only those before it
            future = torch.ones(t_q, t_k, dtype=torch.bool, device=x.device).triu(t_k - t_q + 1)
            logits = logits.masked_fill(future, float("-inf"))
        out = self.merged(torch.softmax(logits, dim=-1) @ v)
        return x + self.dropout(self.self_out(out)), k, v

    def cross_attention(
        self,
        x: torch.Tensor,
        mem_k: torch.Tensor,
        mem_v: torch.Tensor,
        coverage: torch.Tensor,
        grid_mask: torch.Tensor,
        grid: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, d) reads the grid; `coverage` (B, n, h, w) is the attention summed over the
        steps before the first of these T. Returns the output, each step's attention before
        refinement (B, n, T, L) and after it."""
        q = self.heads_of(self.query(self.norm_cross(x)))
        logits = (q @ mem_k.transpose(-1, -2) / math.sqrt(self.k)).masked_fill(
            grid_mask, float("-inf")
        )  # (B, n, T, L)
        raw = torch.softmax(logits, dim=-1)
        b, n, t, length = raw.shape
        h, w = grid
        # The coverage before each step: the given sum plus the steps before it among these T.
        before = coverage.reshape(b, n, 1, length) + raw.cumsum(dim=2) - raw
        before = before.transpose(1, 2).reshape(b * t, n, h, w)
        penalty = self.arm(before).reshape(b, t, n, length).transpose(1, 2)
        alpha = torch.softmax((logits - penalty).masked_fill(grid_mask, float("-inf")), dim=-1)
        out = self.merged(alpha @ mem_v)
        return x + self.dropout(self.cross_out(out)), raw, alpha

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.ffn(self.norm_ffn(x)))


class TransformerDecoder(nn.Module):
    """The decoder as `Decoder`'s interface: `start`, `step` and `teacher_forced`."""

    def __init__(self, cfg, feature_channels: int):
        super().__init__()
        d = cfg.hidden
        self.d, self.heads = d, cfg.heads
        self.project = nn.Conv2d(feature_channels, d, 1)
        self.memory_norm = nn.LayerNorm(d)
        self.embedding = nn.Embedding(cfg.vocab_size, d)
        self.layers = nn.ModuleList(
            DecoderLayer(
                d,
                cfg.heads,
                cfg.ffn,
                cfg.dropout,
                AttentionRefinement(cfg.heads, cfg.arm_channels, cfg.arm_kernel),
            )
            for _ in range(cfg.layers)
        )
        self.out_norm = nn.LayerNorm(d)
        self.classifier = nn.Linear(d, cfg.vocab_size)
        self.dropout = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.embedding.weight, std=d**-0.5)  # times sqrt(d) below: unit scale

    def start(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, TransformerState]:
        """Every layer's keys and values of the grid, stacked (B, 2 x layers, n, L, k), and
        the empty state."""
        b, _, h, w = features.shape
        memory = self.project(features).flatten(2).transpose(1, 2)  # (B, L, d)
        memory = self.memory_norm(memory + grid_positions(h, w, self.d, features.device))
        kv = [t for layer in self.layers for t in layer.memory(memory)]
        k = self.d // self.heads
        empty = features.new_zeros(b, self.heads, 0, k)
        coverage = features.new_zeros(b, self.heads, h, w)
        n = len(self.layers)
        return torch.stack(kv, dim=1), TransformerState([empty] * n, [empty] * n, [coverage] * n)

    def _embed(self, tokens: torch.Tensor, first_position: int) -> torch.Tensor:
        """(B, T) -> (B, T, d): scaled embeddings plus the tokens' positions."""
        positions = torch.arange(tokens.shape[1], device=tokens.device) + first_position
        x = self.embedding(tokens) * math.sqrt(self.d) + sinusoid(positions, self.d)
        return self.dropout(x)

    def _run(
        self,
        tokens: torch.Tensor,
        state: TransformerState,
        memory: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, TransformerState, torch.Tensor]:
        """Logits (B, T, V) for tokens (B, T) that follow `state`, the state after them, and
        the last layer's attention of the last step averaged over heads (B, 1, h, w)."""
        b, _, h, w = mask.shape
        grid_mask = mask.reshape(b, 1, 1, h * w) == 0
        x = self._embed(tokens, state.keys[0].shape[2])
        keys, values, coverage = [], [], []
        alpha = mask
        for i, layer in enumerate(self.layers):
            x, k, v = layer.self_attention(x, state.keys[i], state.values[i])
            x, raw, alpha = layer.cross_attention(
                x, memory[:, 2 * i], memory[:, 2 * i + 1], state.coverage[i], grid_mask, (h, w)
            )
            x = layer.feed_forward(x)
            keys.append(k)
            values.append(v)
            coverage.append(state.coverage[i] + raw.sum(dim=2).reshape(b, -1, h, w))
        logits = self.classifier(self.out_norm(x))
        last = alpha[:, :, -1].mean(dim=1).reshape(b, 1, h, w)
        return logits, TransformerState(keys, values, coverage), last

    def step(
        self,
        tokens: torch.Tensor,
        state: TransformerState,
        features: torch.Tensor,
        memory: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, TransformerState, torch.Tensor]:
        """Logits (B, V) for the token after `tokens` (B,), the next state, and the attention."""
        logits, state, alpha = self._run(tokens[:, None], state, memory, mask)
        return logits[:, 0], state, alpha

    def teacher_forced(
        self,
        inputs: torch.Tensor,
        features: torch.Tensor,
        memory: torch.Tensor,
        mask: torch.Tensor,
        state: TransformerState,
    ) -> torch.Tensor:
        """Logits (B, T, V) for each next token given the previous ones (B, T), all at once."""
        return self._run(inputs, state, memory, mask)[0]
