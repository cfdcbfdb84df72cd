"""Parameterizations: how a render's images are made from the numbers it optimises.

``SigmoidParam`` keeps every pixel in (0, 1) by construction; ``FourierParam`` optimises a
spectrum scaled by 1/f, which decorrelates neighbouring pixels (Olah et al. 2017).
Both expose ``params`` (for the optimiser) and ``image()`` (N, 1, 28, 28).
"""

from __future__ import annotations

import torch

from .transforms import blur

__all__ = ["FourierParam", "SigmoidParam"]


class SigmoidParam:
    """pixel = sigmoid(logit): unconstrained numbers, images always in (0, 1)."""

    def __init__(self, start: torch.Tensor) -> None:
        """``start``: (N, 1, 28, 28) images in (0, 1) to begin from."""
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

    def __init__(self, n: int, g: torch.Generator) -> None:
        self.blurrable = False
        fy = torch.fft.fftfreq(28)[:, None]
        fx = torch.fft.rfftfreq(28)[None, :]
        self.scale = 1.0 / torch.sqrt(fx**2 + fy**2).clamp(min=1.0 / 28)  # (28, 15)
        self.scale = self.scale / self.scale.max()
        self.param = (torch.randn(n, 1, 28, 15, 2, generator=g) * 0.01).requires_grad_(True)

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.param]

    def image(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.param) * self.scale
        return torch.sigmoid(torch.fft.irfft2(spectrum, s=(28, 28), norm="ortho") * 4.0 - 1.0)
