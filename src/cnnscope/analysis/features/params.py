"""Parameterizations: how a render's images are made from the numbers it optimises.

``SigmoidParam`` keeps every pixel in (0, 1) by construction; ``FourierParam`` optimises a
spectrum scaled by 1/f, which decorrelates neighbouring pixels (Olah et al. 2017).
Both expose ``params`` (for the optimiser) and ``image()`` (N, C, H, W): the model's input.
"""

from __future__ import annotations

import torch

from .transforms import blur

__all__ = ["FourierParam", "SigmoidParam"]


class SigmoidParam:
    """pixel = sigmoid(logit): unconstrained numbers, images always in (0, 1)."""

    def __init__(self, start: torch.Tensor) -> None:
        """``start``: (N, C, H, W) images in (0, 1) to begin from."""
        self.blurrable = True
        self.logits = torch.logit(start).requires_grad_(True)

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.logits]

    def image(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    @torch.no_grad()
    def blur(self, sigma: float) -> None:
        """Blur in image space, then return to the logit space."""
        blurred = blur(torch.sigmoid(self.logits), sigma).clamp(1e-4, 1 - 1e-4)
        self.logits.copy_(torch.logit(blurred))


class FourierParam:
    """Decorrelated parameterization: pixel = sigmoid(irfft(spectrum scaled by 1/f))."""

    def __init__(
        self,
        n: int,
        g: torch.Generator,
        shape: tuple[int, ...] = (1, 28, 28),
        device: torch.device | None = None,
    ) -> None:
        """``n`` images of ``shape`` (C, H, W), the model's input, on ``device``."""
        self.blurrable = False
        c, h, w = shape
        self.size = (h, w)
        fy = torch.fft.fftfreq(h)[:, None]
        fx = torch.fft.rfftfreq(w)[None, :]
        self.scale = 1.0 / torch.sqrt(fx**2 + fy**2).clamp(min=1.0 / max(h, w))  # (H, W//2+1)
        self.scale = (self.scale / self.scale.max()).to(device)
        bins = w // 2 + 1
        start = torch.randn(n, c, h, bins, 2, generator=g) * 0.01  # seeded on the CPU
        self.param = start.to(device).requires_grad_(True)

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.param]

    def image(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.param) * self.scale
        return torch.sigmoid(torch.fft.irfft2(spectrum, s=self.size, norm="ortho") * 4.0 - 1.0)
