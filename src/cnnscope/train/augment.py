"""Random affine augmentation of a batch: small rotations, shifts and scalings.

MNIST's digits were size-normalised and centred by mass, but people write them slanted,
off-centre and larger or smaller; showing the network such variants of its training
digits is the single change that moves a small CNN from ~99.4 % to ≥ 99.6 % test accuracy.

The whole batch is warped at once by one ``F.affine_grid`` + ``F.grid_sample`` call on the
CPU (about 1 ms for 128 images), from a generator seeded by the run's seed and the step, so
a run — resumed or not — sees the same images every time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["random_affine"]


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    degrees: float = 10.0,
    shift: float = 2.0,
    scale: tuple[float, float] = (0.9, 1.1),
) -> torch.Tensor:
    """``x`` (N, C, H, W) warped image by image by a random rotation, scaling and shift.

    Parameters
    ----------
    x
        A batch of images, background 0 (MNIST's black) outside the digit.
    generator
        Draws the parameters (on the CPU); seed it for reproducible runs.
    degrees
        Rotation angle drawn uniformly from ±``degrees``; 10 keeps a 1 a 1 and a 6 a 6.
    shift
        Shift in pixels, each axis drawn uniformly from ±``shift``; 2–3 px is typical
        for 28×28 digits (a wider shift pushes strokes out of the frame).
    scale
        Zoom factor range; > 1 enlarges the digit.

    Returns
    -------
    torch.Tensor
        The warped batch, same shape and dtype (bilinear, zeros outside).
    """
    n, _, h, w = x.shape
    u = torch.rand(n, 4, generator=generator)  # (N, 4) in [0, 1)
    angle = (2 * u[:, 0] - 1) * math.radians(degrees)
    zoom = scale[0] + (scale[1] - scale[0]) * u[:, 1]
    # affine_grid maps *output* coordinates in [-1, 1] to input ones: the inverse warp,
    # so a zoom of s reads the input at coordinates / s (the digit grows by s).
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    tx = (2 * u[:, 2] - 1) * shift * 2 / w  # pixels → normalised coordinates
    ty = (2 * u[:, 3] - 1) * shift * 2 / h
    theta = torch.stack(
        [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1
    )  # (N, 2, 3)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out
