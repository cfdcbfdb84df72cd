"""Transforms applied to an image at every render step: robustness to small changes.

A preferred image that survives random jitter, scale and rotation shows a feature, not a
fragile adversarial pattern; blurring between steps removes high-frequency speckle.
"""

from __future__ import annotations

import functools
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
        grid = _affine_grid(theta.to(x.device, x.dtype), x.shape[-2], x.shape[-1])
        x = F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
    return x


def _affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, (N, C, h, w), align_corners=False)``, exactly, in one
    batched product with a cached (h·w, 3) base grid: a fifth of affine_grid's time
    (which builds its base grid on every call)."""
    base = _base_grid(h, w, theta.device, theta.dtype)  # (h·w, 3): x, y, 1
    return torch.matmul(base, theta.transpose(1, 2)).view(-1, h, w, 2)  # (N, h, w, 2)


@functools.lru_cache(maxsize=8)
def _base_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    identity = torch.eye(2, 3, dtype=dtype, device=device)[None]
    xy = F.affine_grid(identity, [1, 1, h, w], align_corners=False).view(h * w, 2)
    return torch.cat([xy, xy.new_ones(h * w, 1)], dim=1)
