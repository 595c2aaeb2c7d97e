"""Training data: packed splits -> model inputs, in padded batches of similar size.

A split is either the corpus's strokes at the one scale (`training.prepare.PackedSplit`),
rendered (and augmented) on the fly in the data loader's workers by the serving renderer
(a share of them as images read back as an upload is: `training.photo`), or ready model
inputs (`InputPack`: the feedback loop's corrections, whatever their kind).
Batches group inputs of similar size under a pixel budget, so a long expression is not
squeezed and short ones do not pay for its padding; each batch carries its mask.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inktex.errors import InkTeXError
from inktex.preprocess import (
    STRIDE,
    PreprocessConfig,
    pad_batch,
    preprocess_gray,
    size_batches,
    strokes_to_input,
    to_uint8,
)
from inktex.vocab import Vocabulary
from training.augment import StrokeAugment, augment_strokes
from training.photo import random_photo
from training.prepare import PackedSplit


@dataclass
class InputPack:
    """Model inputs of any sizes (uint8) with their tokens, in one .npz."""

    images: list[np.ndarray]
    labels: list[list[str]]

    def __len__(self) -> int:
        return len(self.images)

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            pixels=np.concatenate([x.ravel() for x in self.images]),
            shapes=np.array([x.shape for x in self.images], dtype=np.int64).reshape(-1, 2),
            labels=np.array([" ".join(t) for t in self.labels]),
        )

    @classmethod
    def load(cls, path: Path) -> InputPack:
        with np.load(path) as z:
            ends = np.cumsum(z["shapes"].prod(axis=1))
            flat = z["pixels"]
            images = [
                flat[end - h * w : end].reshape(h, w)
                for end, (h, w) in zip(ends, z["shapes"].tolist(), strict=True)
            ]
            return cls(images, [s.split(" ") for s in z["labels"].tolist()])


def load_split(path: Path) -> PackedSplit | InputPack:
    with np.load(path) as z:
        strokes = "points" in z.files
    return PackedSplit.load(path) if strokes else InputPack.load(path)


class ExpressionDataset(torch.utils.data.Dataset):
    """Item `(epoch, i)`: expression i's model input (uint8) and i. Strokes are augmented,
    and a `photo_prob` share of them drawn as a degraded image and read back through the
    image path, with a generator seeded by (seed, epoch, i): the same seed gives the same
    inputs, in any worker."""

    def __init__(
        self,
        split: PackedSplit | InputPack,
        cfg: PreprocessConfig,
        augment: StrokeAugment | None = None,
        seed: int = 0,
        photo_prob: float = 0.0,
    ):
        self.split, self.cfg, self.augment, self.seed = split, cfg, augment, seed
        self.photo_prob = photo_prob

    def __len__(self) -> int:
        return len(self.split)

    def sizes(self) -> list[tuple[int, int]]:
        """Each input's size before augmentation (for batching)."""
        if isinstance(self.split, InputPack):
            return [x.shape for x in self.split.images]
        pad = 2 * self.cfg.margin + self.cfg.line_width
        ink = self.split.ink_sizes() + pad
        sizes = np.minimum(ink, [self.cfg.height, self.cfg.width])
        return [tuple(int(-(-v // STRIDE) * STRIDE) for v in hw) for hw in sizes]

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, int]:
        epoch, i = key
        if isinstance(self.split, InputPack):
            return self.split.images[i], i
        strokes, symbols = self.split.strokes(i)
        line_width = 0
        rng = np.random.default_rng([self.seed, epoch, i])
        if self.augment is not None and rng.random() < self.augment.input_prob:
            strokes = augment_strokes(strokes, symbols, rng, self.cfg.symbol_height, self.augment)
            line_width = int(rng.choice(self.augment.line_widths))
        if self.photo_prob and rng.random() < self.photo_prob:
            try:
                return to_uint8(preprocess_gray(random_photo(strokes, rng), self.cfg)), i
            except InkTeXError:  # a degradation left no readable ink: read the strokes
                pass
        x = strokes_to_input(strokes, self.cfg, normalised=True, line_width=line_width)
        return to_uint8(x), i


class SizeBatchSampler(torch.utils.data.Sampler):
    """Each epoch: shuffled, cut into pools, batched by size within a pool, batches shuffled;
    rank r of `world` takes every world-th batch (all ranks take as many)."""

    POOL = 2048  # inputs sorted together: similar sizes, yet a different mix each epoch

    def __init__(
        self,
        shapes: list[tuple[int, int]],
        indices: list[int],
        pixels: int,
        max_batch: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ):
        self.shapes, self.indices = shapes, indices
        self.pixels, self.max_batch = pixels, max_batch
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0

    def batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 100_003 + epoch)
        order = list(self.indices)
        rng.shuffle(order)
        batches = []
        for k in range(0, len(order), self.POOL):
            batches += size_batches(
                self.shapes, self.pixels, self.max_batch, order[k : k + self.POOL]
            )
        rng.shuffle(batches)
        per_rank = len(batches) // self.world
        return batches[self.rank :: self.world][:per_rank]

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

    def __iter__(self):
        for batch in self.batches(self.epoch):
            yield [(self.epoch, i) for i in batch]


def collate(
    items: list[tuple[np.ndarray, int]], labels: list[list[str]], vocab: Vocabulary
) -> dict[str, torch.Tensor]:
    """Padded images (B, 1, H, W) in [0, 1], their mask, targets (tokens, <eos>, <pad>...)
    and target lengths."""
    images, mask = pad_batch([x.astype(np.float32) / 255 for x, _ in items])
    ids = [vocab.encode(labels[i]) + [vocab.eos_id] for _, i in items]
    targets = torch.full((len(ids), max(map(len, ids))), vocab.pad_id, dtype=torch.long)
    for row, seq in enumerate(ids):
        targets[row, : len(seq)] = torch.tensor(seq)
    return {
        "images": torch.from_numpy(images)[:, None],
        "mask": torch.from_numpy(mask)[:, None],
        "targets": targets,
        "lengths": torch.tensor([len(s) for s in ids]),
    }


def render_all(dataset: ExpressionDataset, limit: int = 0) -> list[np.ndarray]:
    """The split's first `limit` inputs (0: all) as served, without augmentation:
    validation's and scoring's fixed inputs."""
    count = min(limit or len(dataset), len(dataset))
    return [dataset[(0, i)][0] for i in range(count)]
