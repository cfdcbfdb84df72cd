"""Transforms applied to an image at every render step: robustness to small changes.

A preferred image that survives random jitter, scale and rotation shows a feature, not a
fragile adversarial pattern; blurring between steps removes high-frequency speckle.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .render import RenderConfig

__all__ = ["blur", "random_transform"]


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (N, 1, H, W) images by ``sigma`` pixels, edges replicated."""
    r = max(1, math.ceil(2 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def random_transform(x: torch.Tensor, cfg: RenderConfig, g: torch.Generator) -> torch.Tensor:
    """Random jitter, scale and rotation, a different draw per image (robust features)."""
    n = x.shape[0]
    if cfg.jitter:
        dx, dy = torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=g).tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if cfg.scale or cfg.rotate:
        s = 1 + (torch.rand(n, generator=g) * 2 - 1) * cfg.scale
        a = (torch.rand(n, generator=g) * 2 - 1) * math.radians(cfg.rotate)
        theta = torch.zeros(n, 2, 3)  # built on the CPU (seeded draws), moved below
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a) / s, -torch.sin(a) / s
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a) / s, torch.cos(a) / s
        grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
    return x
