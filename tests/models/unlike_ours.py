"""A test model unlike the built-ins: nested Sequential, BatchNorm, a residual add that
calls one GELU twice, Dropout2d, SiLU, adaptive pooling, and names like ``head.fc``.

Loaded by the tests as ``tests/models/unlike_ours.py:UnlikeOurs`` (a file, not a package
import), exactly as a user's ``net.py:Net``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class Residual(nn.Module):
    """conv → BN → GELU, added to its input, then the *same* GELU again."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.act(self.bn(self.conv(x))))


class UnlikeOurs(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),  # features.0
            nn.BatchNorm2d(8),
            nn.SiLU(),
            nn.MaxPool2d(2),  # features.3: (8, 14, 14)
            Residual(8),  # features.4.conv, .bn, .act
            nn.Dropout2d(0.1),  # skipped: not a stage
            nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True)),
            nn.AdaptiveAvgPool2d(4),  # features.7: (16, 4, 4)
        )
        self.head = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(16 * 4 * 4, 32),
                act=nn.GELU(),
                drop=nn.Dropout(0.1),
                fc=nn.Linear(32, classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, classes)


def four_classes() -> nn.Module:
    """A zero-argument factory: the same network for a 4-class problem."""
    return UnlikeOurs(classes=4)
