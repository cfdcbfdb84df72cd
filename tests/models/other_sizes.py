"""Test models whose input is not 28×28: 32×32 with 3 classes, 20×24 (non-square) with 4.

Each declares ``input_shape`` as a user's model would; loaded by the tests as
``tests/models/other_sizes.py:Wide32`` (a file, not a package import).
"""

from __future__ import annotations

import torch
from torch import nn


class _Small(nn.Module):
    """conv → ReLU → 2×2 max-pool → conv → ReLU → pool → fc, for an (H, W) input."""

    input_shape: tuple[int, int, int]

    def __init__(self, h: int, w: int, classes: int) -> None:
        super().__init__()
        self.input_shape = (1, h, w)
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)  # (4, H/2, W/2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)  # (6, H/4, W/4)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(6 * (h // 4) * (w // 4), classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc(self.flatten(x))  # (N, classes)


class Wide32(_Small):
    def __init__(self) -> None:
        super().__init__(32, 32, classes=3)


class Tall20x24(_Small):
    """20 rows, 24 columns: a non-square input."""

    def __init__(self) -> None:
        super().__init__(20, 24, classes=4)
