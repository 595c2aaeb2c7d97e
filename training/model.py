"""The encoder-decoder that reads handwriting: a CNN encoder and an attention decoder.

Two encoders, chosen by `ModelConfig.arch`:
- `dense` (default): a DenseNet-B encoder as in DenseWAP (Zhang et al. 2018), downsampling 16x.
- `seed`: a ResNet-18 trunk trained from scratch, its last stage at stride 1 so it also
  downsamples 16x (HMER needs the resolution: a 32x grid loses sub- and superscripts).
Two decoders, chosen by `ModelConfig.decoder`: `gru` (DWAP's conditional GRU with coverage
attention) and `transformer` (`training.transformer`: BTTR's with CoMER's attention
refinement). Each runs one step at a time with explicit state (`DecoderState`,
`TransformerState`) so that it exports as a single ONNX step graph; the search over those
steps lives in the torch-free `inktex.search`.

Inputs of different sizes travel padded in one batch with a mask (1 on an input's own
pixels, `inktex.preprocess.pad_batch`). The encoder zeroes the padding before every
convolution that looks at neighbours, so an input's features are the same alone or padded
in a batch; attention and the initial state ignore the padded positions.

The encoders normalise with BatchNorm (`norm: batch`, every released model) or with
`MaskedGroupNorm` (`norm: group`): each input's own statistics over its own pixels, the same
in training and serving and the same alone or padded.

Shapes: B batch, H x W input, h x w = H/16 x W/16 feature grid, C feature channels,
A attention size, D decoder hidden size, V vocabulary size; masks are (B, 1, H, W) or
(B, 1, h, w), float 0/1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from training.transformer import TransformerDecoder


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    arch: str = "dense"  # dense | seed
    growth: int = 16  # dense: channels each layer adds
    depths: tuple[int, ...] = (4, 8, 8)  # dense: bottleneck layers per block
    stem: int = 32  # dense: channels of the first convolution
    resnet_width: int = 64  # seed: channels of ResNet-18's first stage (64 is the original)
    norm: str = "batch"  # encoder: batch (BatchNorm, every released model) | group (masked)
    embed: int = 256
    hidden: int = 256
    attention: int = 256
    coverage_channels: int = 32
    coverage_kernel: int = 11
    dropout: float = 0.3
    decoder: str = "gru"  # gru (DWAP's, with coverage) | transformer (BTTR's, with CoMER's ARM)
    layers: int = 3  # transformer: decoder layers
    heads: int = 8  # transformer: attention heads (of `hidden` channels in all)
    ffn: int = 1024  # transformer: feed-forward width
    arm_channels: int = 32  # transformer: attention refinement's coverage channels
    arm_kernel: int = 5  # transformer: its convolution's size (CoMER's)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["depths"] = list(self.depths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if "depths" in d:
            d["depths"] = tuple(d["depths"])
        return cls(**d)


# Architecture widths; `tiny` trains in seconds for tests and CI.
WIDTHS = {
    "base": {},
    "tiny": dict(
        growth=8,
        depths=(2, 2, 2),
        stem=16,
        resnet_width=8,
        embed=32,
        hidden=32,
        attention=32,
        coverage_channels=8,
        coverage_kernel=5,
        dropout=0.0,
        layers=1,
        heads=2,
        ffn=64,
        arm_channels=4,
        arm_kernel=3,
    ),
}


STRIDE = 16  # input pixels per feature cell


def mask_at(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """An input mask at a layer `stride` times coarser (input sizes are multiples of 16)."""
    return mask[:, :, ::stride, ::stride] if stride > 1 else mask


class MaskedGroupNorm(nn.Module):
    """GroupNorm (Wu and He 2018) whose statistics cover each input's own pixels only.

    No running statistics: training and serving normalise alike, and an input's features do
    not depend on what else is in its batch or on how much padding surrounds it. Called with
    the input's mask at this layer's resolution. The padding is zeroed on the way in, so it
    comes out as each channel's shift: normalised by statistics that never saw it, it could
    otherwise grow layer after layer until it overflowed, and an infinity times the mask's
    zero before a convolution would carry NaN into the input's own pixels."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        # 8 groups, not the paper's 32: the dense encoder's layers are 16-216 channels wide,
        # and 32 groups there would hold 1-7 channels each, close to normalising each channel
        # alone. The largest divisor of `channels` up to 8, because groups must be equal.
        self.groups = max(g for g in range(1, 9) if channels % g == 0)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # fp32 statistics under autocast, as autocast runs nn.GroupNorm: bf16 sums over a
        # whole image would lose the mean
        xf, m = x.float(), mask.float()
        xm = xf * m  # (B, C, h, w), the padding zeroed
        per_group = (self.groups, xf.shape[1] // self.groups)
        # one pass, E[x^2] - E[x]^2 from sums per channel then per group: the two-pass form
        # (centre, then square) made the ONNX encoder 1.4x slower, and in fp32 this one stays
        # within the 1e-5 the alone-or-padded tests ask
        s1 = xm.sum(dim=(2, 3)).unflatten(1, per_group).sum(2, keepdim=True)  # (B, G, 1)
        s2 = (xm * xf).sum(dim=(2, 3)).unflatten(1, per_group).sum(2, keepdim=True)
        count = m.sum(dim=(2, 3))[:, :, None] * per_group[1]  # (B, 1, 1)
        mean = s1 / count
        var = (s2 / count - mean.square()).clamp_min(0)
        rstd = torch.rsqrt(var + self.eps).expand(-1, -1, per_group[1]).flatten(1)  # (B, C)
        scale = self.weight * rstd
        shift = self.bias - mean.expand(-1, -1, per_group[1]).flatten(1) * scale
        return (xm * scale[:, :, None, None] + shift[:, :, None, None]).to(x.dtype)


def _norm(channels: int, kind: str) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return MaskedGroupNorm(channels)
    raise ValueError(f"unknown normalisation {kind!r}: use 'batch' or 'group'")


def _apply(layer: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`layer(x)`, with the mask (at x's resolution) when the layer is a masked norm."""
    return layer(x, mask) if isinstance(layer, MaskedGroupNorm) else layer(x)


def _run(layers: nn.Sequential, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = _apply(layer, x, mask)
    return x


class _DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1-BN-ReLU-Conv3x3, output concatenated to the input (DenseNet-B).

    The 3x3 convolution reads its neighbours: the padding is zeroed before it, as a lone
    input's border would be."""

    def __init__(self, channels: int, growth: int, norm: str = "batch"):
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels, norm),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 4 * growth, 1, bias=False),
            _norm(4 * growth, norm),
            nn.ReLU(inplace=True),
            nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = _run(self.body[:-1], x, mask)
        return torch.cat([x, self.body[-1](h * mask)], dim=1)


class DenseEncoder(nn.Module):
    """Stem (4x) + dense blocks with halving transitions between them (16x in all)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(1, cfg.stem, 7, stride=2, padding=3, bias=False),
            _norm(cfg.stem, cfg.norm),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        channels = cfg.stem
        # index in `body` of each layer that takes the mask -> its stride: the dense layers,
        # and the norms when they are masked. The export's rearranged `body` swaps only a
        # convolution and a pool, so the indices hold for it too.
        self.strides: dict[int, int] = {1: 2} if cfg.norm == "group" else {}

        def add_norm(stride: int) -> None:
            if cfg.norm == "group":
                self.strides[len(layers)] = stride
            layers.append(_norm(channels, cfg.norm))

        for i, depth in enumerate(cfg.depths):
            for _ in range(depth):
                self.strides[len(layers)] = 4 * 2**i
                layers.append(_DenseLayer(channels, cfg.growth, cfg.norm))
                channels += cfg.growth
            if i < len(cfg.depths) - 1:
                out = channels // 2
                add_norm(4 * 2**i)
                layers += [
                    nn.ReLU(inplace=True),
                    nn.Conv2d(channels, out, 1, bias=False),
                    nn.AvgPool2d(2),
                ]
                channels = out
        add_norm(4 * 2 ** (len(cfg.depths) - 1))
        layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, body: nn.Sequential | None = None
    ) -> torch.Tensor:
        """Features (B, C, h, w); `body`: these layers rearranged (the ONNX export's)."""
        for i, layer in enumerate(body if body is not None else self.body):
            x = layer(x, mask_at(mask, self.strides[i])) if i in self.strides else layer(x)
        return x


class _BasicBlock(nn.Module):
    """ResNet's basic block; the padding is zeroed before each 3x3 convolution."""

    def __init__(self, channels_in: int, channels: int, stride: int, norm: str = "batch"):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False)
        self.bn1 = _norm(channels, norm)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = _norm(channels, norm)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or channels_in != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(channels_in, channels, 1, stride, bias=False), _norm(channels, norm)
            )

    def forward(self, x: torch.Tensor, mask_in: torch.Tensor, mask_out: torch.Tensor):
        out = self.relu(_apply(self.bn1, self.conv1(x * mask_in), mask_out))
        out = _apply(self.bn2, self.conv2(out * mask_out), mask_out)
        shortcut = x if self.downsample is None else _run(self.downsample, x, mask_out)
        return self.relu(out + shortcut)


class ResNetEncoder(nn.Module):
    """ResNet-18's trunk (He et al. 2016) from scratch, one channel in, the last stage at
    stride 1 so that it downsamples 16x (HMER needs the resolution: a 32x grid loses sub- and
    superscripts). Written out here rather than taken from torchvision, to mask the padding."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        width = cfg.resnet_width
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 7, stride=2, padding=3, bias=False),
            _norm(width, cfg.norm),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        blocks, self.strides = [], []
        channels, stride = width, 4
        for stage, out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            step = 2 if stage in (1, 2) else 1  # stages 2 and 3 halve; stage 4 keeps 16x
            blocks += [
                _BasicBlock(channels, out, step, cfg.norm),
                _BasicBlock(out, out, 1, cfg.norm),
            ]
            self.strides += [(stride, stride * step), (stride * step, stride * step)]
            channels, stride = out, stride * step
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = channels

    def forward(self, x: torch.Tensor, mask: torch.Tensor, body=None) -> torch.Tensor:
        x = _run(self.stem[:3], x * mask, mask_at(mask, 2))  # convolution and norm at 2x
        x = self.stem[3](x)  # inputs span an even number of cells here: no window reaches past
        for block, (s_in, s_out) in zip(self.blocks, self.strides, strict=True):
            x = block(x, mask_at(mask, s_in), mask_at(mask, s_out))
        return x


@dataclass
class DecoderState:
    hidden: torch.Tensor  # (B, D)
    coverage: torch.Tensor  # (B, 1, h, w): attention summed over past steps

    def select(self, rows: torch.Tensor) -> DecoderState:
        return DecoderState(self.hidden.index_select(0, rows), self.coverage.index_select(0, rows))


class CoverageAttention(nn.Module):
    """Additive attention whose energy also sees where it has already looked (WAP's coverage)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.query = nn.Linear(cfg.hidden, cfg.attention)
        self.coverage_conv = nn.Conv2d(
            1, cfg.coverage_channels, cfg.coverage_kernel, padding=cfg.coverage_kernel // 2
        )
        self.coverage_proj = nn.Conv2d(cfg.coverage_channels, cfg.attention, 1, bias=False)
        self.energy = nn.Conv2d(cfg.attention, 1, 1)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        coverage: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.query(query)[:, :, None, None]  # (B, A, 1, 1)
        cov = self.coverage_proj(self.coverage_conv(coverage))  # (B, A, h, w)
        energy = self.energy(torch.tanh(q + keys + cov))  # (B, 1, h, w)
        energy = energy.float().masked_fill(mask == 0, float("-inf"))
        b, _, h, w = energy.shape
        alpha = torch.softmax(energy.reshape(b, h * w), dim=1).reshape(b, 1, h, w)
        context = (alpha * values).sum(dim=(2, 3))  # (B, C)
        return context, alpha


class Decoder(nn.Module):
    """Two GRU cells around coverage attention (DWAP's conditional GRU), one token per step."""

    def __init__(self, cfg: ModelConfig, feature_channels: int):
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed)
        self.init_hidden = nn.Linear(feature_channels, cfg.hidden)
        self.key = nn.Conv2d(feature_channels, cfg.attention, 1)
        self.gru_in = nn.GRUCell(cfg.embed, cfg.hidden)
        self.attention = CoverageAttention(cfg)
        self.gru_ctx = nn.GRUCell(feature_channels, cfg.hidden)
        self.out_hidden = nn.Linear(cfg.hidden, cfg.embed)
        self.out_context = nn.Linear(feature_channels, cfg.embed)
        self.out_embed = nn.Linear(cfg.embed, cfg.embed)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.embed, cfg.vocab_size)

    def start(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, DecoderState]:
        """Attention keys and the initial state from the encoder's features."""
        keys = self.key(features)  # (B, A, h, w)
        mean = (features * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3))  # (B, C)
        hidden = torch.tanh(self.init_hidden(mean))  # (B, D)
        b, _, h, w = features.shape
        coverage = features.new_zeros(b, 1, h, w)
        return keys, DecoderState(hidden, coverage)

    def step(
        self,
        tokens: torch.Tensor,
        state: DecoderState,
        features: torch.Tensor,
        keys: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """Logits (B, V) for the token after `tokens` (B,), the next state, and the attention."""
        emb = self.embedding(tokens)  # (B, E)
        query = self.gru_in(emb, state.hidden)
        context, alpha = self.attention(query, keys, features, state.coverage, mask)
        hidden = self.gru_ctx(context, query)
        out = self.out_hidden(hidden) + self.out_context(context) + self.out_embed(emb)
        logits = self.classifier(self.dropout(torch.tanh(out)))
        return logits, DecoderState(hidden, state.coverage + alpha), alpha

    def teacher_forced(
        self,
        inputs: torch.Tensor,
        features: torch.Tensor,
        keys: torch.Tensor,
        mask: torch.Tensor,
        state: DecoderState,
    ) -> torch.Tensor:
        """Logits (B, T, V) for each next token given the previous ones (B, T), a step at a time."""
        logits = []
        for t in range(inputs.shape[1]):
            step_logits, state, _ = self.step(inputs[:, t], state, features, keys, mask)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)


class Recognizer(nn.Module):
    """Image (B, 1, H, W) ink map -> token logits, trained with teacher forcing."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = DenseEncoder(cfg) if cfg.arch == "dense" else ResNetEncoder(cfg)
        if cfg.arch not in ("dense", "seed"):
            raise ValueError(f"unknown architecture {cfg.arch!r}: use 'dense' or 'seed'")
        if cfg.decoder not in ("gru", "transformer"):
            raise ValueError(f"unknown decoder {cfg.decoder!r}: use 'gru' or 'transformer'")
        decoder = Decoder if cfg.decoder == "gru" else TransformerDecoder
        self.decoder: Decoder | TransformerDecoder = decoder(cfg, self.encoder.out_channels)

    def encode(
        self, images: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, C, h, w) and their mask (B, 1, h, w); no mask: nothing is padded."""
        if mask is None:
            mask = torch.ones_like(images)
        return self.encoder(images, mask), mask_at(mask, STRIDE)

    def forward(
        self, images: torch.Tensor, inputs: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, T, V) for each next token given the previous ones `inputs` (B, T); inputs
        (k x B, T) are k readings of each image, stacked (left to right, then right to left)."""
        features, feature_mask = self.encode(images, mask)
        if len(inputs) > len(images):  # several readings of each image (the directions), stacked
            copies = len(inputs) // len(images)
            features, feature_mask = (
                features.repeat(copies, 1, 1, 1),
                feature_mask.repeat(copies, 1, 1, 1),
            )
        keys, state = self.decoder.start(features, feature_mask)
        return self.decoder.teacher_forced(inputs, features, keys, feature_mask, state)  # type: ignore[arg-type]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def init_weights(model: Recognizer) -> None:
    """Kaiming for the encoder's ReLU convolutions only.

    The attention's convolutions keep PyTorch's fan-in defaults: Kaiming's fan-out rule on
    the 1-channel energy convolution gives energies with a standard deviation near 16, a
    one-hot softmax at the start, and an attention that never learns where to look.
    """
    for m in model.encoder.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    emb = model.decoder.embedding
    nn.init.normal_(emb.weight, std=1 / math.sqrt(emb.embedding_dim))
