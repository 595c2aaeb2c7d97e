"""Batch augmentation on the training device: affine, elastic and stroke-width changes.

It runs on already fitted model inputs (B, 1, H, W), so the deterministic fit that serving
uses stays exactly as served, and the random part costs a few GPU kernels per batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine_grid(
    b: int, h: int, w: int, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sampling grid (B, H, W, 2) of a random shrink, rotation, shear and shift."""

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, device=device, generator=generator)

    scale = uniform(0.8, 1.0)
    aspect = uniform(0.9, 1.1)
    sx, sy = scale * aspect.sqrt(), scale / aspect.sqrt()
    angle = uniform(-4, 4) * math.pi / 180
    shear = uniform(-0.2, 0.2)
    cos, sin = angle.cos(), angle.sin()
    # Forward map in pixel units (x right, y down): rotate * shear * scale.
    m = torch.zeros(b, 2, 2, device=device)
    m[:, 0, 0], m[:, 0, 1] = cos * sx, (cos * shear - sin) * sy
    m[:, 1, 0], m[:, 1, 1] = sin * sx, (sin * shear + cos) * sy
    # To normalised coordinates ([-1, 1] on each axis), then invert: grids map out -> in.
    n = torch.tensor([[w / 2, 0.0], [0.0, h / 2]], device=device)
    m_norm = torch.linalg.inv(n) @ m @ n
    inv = torch.linalg.inv(m_norm)
    # Shift within the room the shrink left, so the ink stays inside the box.
    room = (1 - torch.maximum(sx, sy)).clamp(min=0)
    shift = torch.stack([uniform(-1, 1) * room, uniform(-1, 1) * room], dim=1)  # (B, 2)
    theta = torch.cat([inv, -(inv @ shift[:, :, None])], dim=2)
    return F.affine_grid(theta, (b, 1, h, w), align_corners=False)


def elastic_offsets(
    grid: torch.Tensor, pixels: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A smooth random displacement of up to about `pixels` added to a sampling grid."""
    b, h, w, _ = grid.shape
    coarse = torch.randn(b, 2, 4, 10, device=grid.device, generator=generator)
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    scale = torch.tensor([2 * pixels / w, 2 * pixels / h], device=grid.device)
    return grid + field.permute(0, 2, 3, 1) * scale


def augment(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly distorted copies of fitted ink maps (B, 1, H, W) in [0, 1]."""
    b, _, h, w = images.shape
    grid = elastic_offsets(random_affine_grid(b, h, w, images.device, generator), 1.5, generator)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Stroke width: some samples get bolder (pens and photos), some a softer edge.
    r = torch.rand(b, 1, 1, 1, device=images.device, generator=generator)
    bold = F.max_pool2d(out, 3, stride=1, padding=1)
    soft = F.avg_pool2d(out, 3, stride=1, padding=1)
    out = torch.where(r < 0.35, bold, torch.where(r < 0.5, (out + soft).clamp(max=1), out))
    peak = out.flatten(1).amax(dim=1).clamp(min=1e-3)[:, None, None, None]
    return (out / peak).clamp(0, 1)
