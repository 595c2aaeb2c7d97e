"""The encoder-decoder that reads handwriting: a CNN encoder, a GRU decoder with coverage attention.

Two encoders, chosen by `ModelConfig.arch`:
- `dense` (default): a DenseNet-B encoder as in DenseWAP (Zhang et al. 2018), downsampling 16x.
- `seed`: torchvision's ResNet-18 trunk trained from scratch, strides cut so it also downsamples
  16x (HMER needs the resolution: a 32x grid loses sub- and superscripts).
Both feed the same decoder, which runs one step at a time with explicit state
(`DecoderState`) so that it exports as a single ONNX step graph; the search over those steps
lives in the torch-free `inktex.search`.

Shapes: B batch, H x W input, h x w = H/16 x W/16 feature grid, C feature channels,
A attention size, D decoder hidden size, V vocabulary size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    arch: str = "dense"  # dense | seed
    growth: int = 16  # dense: channels each layer adds
    depths: tuple[int, ...] = (4, 8, 8)  # dense: bottleneck layers per block
    stem: int = 32  # dense: channels of the first convolution
    resnet_width: int = 64  # seed: channels of ResNet-18's first stage (64 is the original)
    embed: int = 256
    hidden: int = 256
    attention: int = 256
    coverage_channels: int = 32
    coverage_kernel: int = 11
    dropout: float = 0.3

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
    ),
}


class _DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1-BN-ReLU-Conv3x3, output concatenated to the input (DenseNet-B)."""

    def __init__(self, channels: int, growth: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth),
            nn.ReLU(inplace=True),
            nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class DenseEncoder(nn.Module):
    """Stem (4x) + dense blocks with halving transitions between them (16x in all)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(1, cfg.stem, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(cfg.stem),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        channels = cfg.stem
        for i, depth in enumerate(cfg.depths):
            for _ in range(depth):
                layers.append(_DenseLayer(channels, cfg.growth))
                channels += cfg.growth
            if i < len(cfg.depths) - 1:
                out = channels // 2
                layers += [
                    nn.BatchNorm2d(channels),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(channels, out, 1, bias=False),
                    nn.AvgPool2d(2),
                ]
                channels = out
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, C, h, w)


class ResNetEncoder(nn.Module):
    """torchvision's ResNet-18 from scratch, one channel in, last stage at stride 1 (16x)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        from torchvision.models import resnet18  # only the seed design needs torchvision

        net = resnet18(weights=None)
        width = cfg.resnet_width
        if width != 64:  # a narrower ResNet-18 for the tiny preset
            from torchvision.models.resnet import BasicBlock, ResNet

            net = ResNet(BasicBlock, [2, 2, 2, 2])
            net.inplanes = width
            net.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            net.bn1 = nn.BatchNorm2d(width)
            net.layer1 = net._make_layer(BasicBlock, width, 2)
            net.layer2 = net._make_layer(BasicBlock, width * 2, 2, stride=2)
            net.layer3 = net._make_layer(BasicBlock, width * 4, 2, stride=2)
            net.layer4 = net._make_layer(BasicBlock, width * 8, 2, stride=2)
        net.conv1 = nn.Conv2d(1, width, 7, stride=2, padding=3, bias=False)
        # layer4 keeps stride 1: 2 (conv1) * 2 (maxpool) * 2 * 2 = 16x.
        block = net.layer4[0]
        block.conv1.stride = (1, 1)
        block.downsample[0].stride = (1, 1)
        self.body = nn.Sequential(
            net.conv1,
            net.bn1,
            net.relu,
            net.maxpool,
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.out_channels = width * 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@dataclass
class DecoderState:
    hidden: torch.Tensor  # (B, D)
    coverage: torch.Tensor  # (B, 1, h, w): attention summed over past steps


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
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, coverage: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.query(query)[:, :, None, None]  # (B, A, 1, 1)
        cov = self.coverage_proj(self.coverage_conv(coverage))  # (B, A, h, w)
        energy = self.energy(torch.tanh(q + keys + cov))  # (B, 1, h, w)
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

    def start(self, features: torch.Tensor) -> tuple[torch.Tensor, DecoderState]:
        """Attention keys and the initial state from the encoder's features."""
        keys = self.key(features)  # (B, A, h, w)
        hidden = torch.tanh(self.init_hidden(features.mean(dim=(2, 3))))  # (B, D)
        b, _, h, w = features.shape
        coverage = features.new_zeros(b, 1, h, w)
        return keys, DecoderState(hidden, coverage)

    def step(
        self, tokens: torch.Tensor, state: DecoderState, features: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """Logits (B, V) for the token after `tokens` (B,), the next state, and the attention."""
        emb = self.embedding(tokens)  # (B, E)
        query = self.gru_in(emb, state.hidden)
        context, alpha = self.attention(query, keys, features, state.coverage)
        hidden = self.gru_ctx(context, query)
        out = self.out_hidden(hidden) + self.out_context(context) + self.out_embed(emb)
        logits = self.classifier(self.dropout(torch.tanh(out)))
        return logits, DecoderState(hidden, state.coverage + alpha), alpha


class Recognizer(nn.Module):
    """Image (B, 1, H, W) ink map -> token logits, trained with teacher forcing."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = DenseEncoder(cfg) if cfg.arch == "dense" else ResNetEncoder(cfg)
        if cfg.arch not in ("dense", "seed"):
            raise ValueError(f"unknown architecture {cfg.arch!r}: use 'dense' or 'seed'")
        self.decoder = Decoder(cfg, self.encoder.out_channels)

    def forward(self, images: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for each next token given the previous ones `inputs` (B, T)."""
        features = self.encoder(images)
        keys, state = self.decoder.start(features)
        logits = []
        for t in range(inputs.shape[1]):
            step_logits, state, _ = self.decoder.step(inputs[:, t], state, features, keys)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)


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
