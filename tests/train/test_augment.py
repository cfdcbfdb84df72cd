"""random_affine: the warps it draws are the ones it promises, and seeded."""

from __future__ import annotations

import torch

from cnnscope.data import to_float
from cnnscope.train.augment import random_affine


def _digits(mnist, n: int = 64) -> torch.Tensor:
    return to_float(mnist.test_images[:n])  # (N, 1, 28, 28)


def _centroid(x: torch.Tensor) -> torch.Tensor:
    """(N, 2) centre of mass (row, column) in pixels."""
    h, w = x.shape[-2:]
    mass = x.sum((1, 2, 3))
    rows = (x.sum((1, 3)) * torch.arange(h)).sum(1) / mass
    cols = (x.sum((1, 2)) * torch.arange(w)).sum(1) / mass
    return torch.stack([rows, cols], 1)


def _spread(x: torch.Tensor) -> torch.Tensor:
    """(N,) root-mean-square distance of the ink from its centre of mass, in pixels."""
    h, w = x.shape[-2:]
    c = _centroid(x)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    d2 = (yy - c[:, :1, None]) ** 2 + (xx - c[:, 1:, None]) ** 2  # (N, H, W)
    return ((x[:, 0] * d2).sum((1, 2)) / x.sum((1, 2, 3))).sqrt()


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_no_warp_is_the_identity(mnist) -> None:
    x = _digits(mnist)
    out = random_affine(x, _gen(), degrees=0, shift=0, scale=(1.0, 1.0))
    assert torch.allclose(out, x, atol=1e-5)


def test_shifts_stay_within_their_range_and_vary(mnist) -> None:
    x = _digits(mnist)
    out = random_affine(x, _gen(), degrees=0, shift=2.0, scale=(1.0, 1.0))
    moved = _centroid(out) - _centroid(x)  # (N, 2) in pixels
    assert moved.abs().max() <= 2.05  # ±2 px (ink pushed off the frame aside)
    assert moved.abs().max() > 1.0 and moved.std(0).min() > 0.5  # each axis, both ways
    # Only moved: the ink is kept (bilinear interpolation spreads it, never adds), unless
    # a wide digit is pushed partly off the frame.
    kept = out.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert kept.max() <= 1 + 1e-5 and (kept > 0.99).float().mean() > 0.9


def test_scale_above_one_enlarges_the_digit(mnist) -> None:
    x = _digits(mnist)
    big = random_affine(x, _gen(), degrees=0, shift=0, scale=(1.2, 1.2))
    small = random_affine(x, _gen(), degrees=0, shift=0, scale=(0.8, 0.8))
    ratio_big, ratio_small = _spread(big) / _spread(x), _spread(small) / _spread(x)
    # ×1.2 and ×0.8 (bilinear sampling blurs a shrunk stroke a little; an enlarged digit
    # may lose ink off the frame).
    assert abs(float(ratio_big.median()) - 1.2) < 0.01 and ratio_big.min() > 1.1
    assert abs(float(ratio_small.median()) - 0.8) < 0.01 and ratio_small.max() < 0.83


def test_rotation_keeps_the_ink_and_its_spread(mnist) -> None:
    x = _digits(mnist)
    out = random_affine(x, _gen(), degrees=10, shift=0, scale=(1.0, 1.0))
    assert not torch.allclose(out, x, atol=1e-2)
    assert abs(float((_spread(out) / _spread(x)).median()) - 1) < 0.02
    assert float((out.sum((1, 2, 3)) / x.sum((1, 2, 3))).median()) > 0.98


def test_seeded_same_seed_same_images(mnist) -> None:
    x = _digits(mnist, 16)
    a, b, c = (random_affine(x, _gen(s)) for s in (0, 0, 1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= 0 and a.max() <= 1  # still images in [0, 1]
