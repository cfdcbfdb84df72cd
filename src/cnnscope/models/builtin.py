"""The five built-in architectures and their registry; stages are named submodules.

Every stage a person may look at is a submodule whose *output* is that stage, so a forward
hook on ``model.get_submodule(name)`` records it; ``model.stage_names`` lists them in
forward order. Models take float32 images (N, 1, 28, 28) in [0, 1] (white ink on black,
as MNIST) and return logits (N, num_classes): 10 unless a data set has other classes
(``num_classes``, an option of every built-in, recorded in the weights' header).

``conv*`` stages are pre-activation; ``relu*`` follow them; ``fc*`` stages are the fully
connected layers *after* their ReLU (the "firing" of the units), before dropout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DEFAULT_MODEL", "MODELS", "ModelSpec", "StagedModel", "build_model", "get_spec"]

NUM_CLASSES = 10
INPUT_SHAPE = (1, 28, 28)


class LinearReLU(nn.Linear):
    """A fully connected layer whose output is after its ReLU: one stage, one hook."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x))


class StagedModel(nn.Module):
    """Base class: ``stage_names`` in forward order, each the name of a submodule."""

    stage_names: tuple[str, ...] = ()
    arch: str = ""
    input_shape: tuple[int, ...] = INPUT_SHAPE  # one image: (C, H, W)

    def config(self) -> dict[str, Any]:
        """The constructor arguments, enough to rebuild this architecture."""
        return dict(self._config)

    def _remember(self, **config: Any) -> None:
        self._config = config

    @property
    def description(self) -> str:
        """One line on what the architecture is, for listings and the page."""
        return get_spec(self.arch).description if self.arch in MODELS else type(self).__name__

    def rebuild(self) -> StagedModel:
        """A freshly initialised model of the same architecture and options."""
        return build_model(self.arch, **self.config())


class DeepMNIST(StagedModel):
    """TensorFlow's "Deep MNIST for Experts" and its smaller sibling (``hvass``).

    conv 5×5 SAME → ReLU → maxpool 2 → conv 5×5 SAME → ReLU → maxpool 2 → fc → ReLU →
    dropout → fc 10.
    """

    stage_names = ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1", "logits")

    def __init__(
        self,
        conv1: int = 32,
        conv2: int = 64,
        hidden: int = 1024,
        dropout: float = 0.5,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self._remember(
            conv1=conv1, conv2=conv2, hidden=hidden, dropout=dropout, num_classes=num_classes
        )
        self.conv1 = nn.Conv2d(1, conv1, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(conv1, conv2, 5, padding=2)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = LinearReLU(7 * 7 * conv2, hidden)
        self.dropout = nn.Dropout(dropout)
        self.logits = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))  # (N, C1, 14, 14)
        x = self.pool2(self.relu2(self.conv2(x)))  # (N, C2, 7, 7)
        x = self.fc1(x.flatten(1))  # (N, hidden)
        logits: torch.Tensor = self.logits(self.dropout(x))  # (N, 10)
        return logits


class SingleConv(StagedModel):
    """One conv layer: conv 5×5×32 SAME → ReLU → maxpool 2 → fc 1000 → ReLU → fc 10."""

    stage_names = ("conv1", "relu1", "pool1", "fc1", "logits")

    def __init__(
        self,
        conv1: int = 32,
        hidden: int = 1000,
        dropout: float = 0.0,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self._remember(conv1=conv1, hidden=hidden, dropout=dropout, num_classes=num_classes)
        self.conv1 = nn.Conv2d(1, conv1, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.fc1 = LinearReLU(14 * 14 * conv1, hidden)
        self.dropout = nn.Dropout(dropout)
        self.logits = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))  # (N, C1, 14, 14)
        x = self.fc1(x.flatten(1))  # (N, hidden)
        logits: torch.Tensor = self.logits(self.dropout(x))  # (N, 10)
        return logits


class LeNet5(StagedModel):
    """LeNet-5 (LeCun et al. 1998) for 28×28 input.

    C1: conv 5×5×6 with padding 2 (the paper padded its digits to 32×32) → S2: pool 2 →
    C3: conv 5×5×16 VALID → S4: pool 2 → C5: fc 120 → F6: fc 84 → 10. ReLU and max pooling
    stand in for the paper's scaled tanh and trainable subsampling, as modern renderings do;
    C3 is fully connected to S2 rather than the paper's sparse table.
    """

    stage_names = (
        "conv1",
        "relu1",
        "pool1",
        "conv2",
        "relu2",
        "pool2",
        "fc1",
        "fc2",
        "logits",
    )

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self._remember(num_classes=num_classes)
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = LinearReLU(16 * 5 * 5, 120)
        self.fc2 = LinearReLU(120, 84)
        self.logits = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))  # (N, 6, 14, 14)
        x = self.pool2(self.relu2(self.conv2(x)))  # (N, 16, 5, 5)
        logits: torch.Tensor = self.logits(self.fc2(self.fc1(x.flatten(1))))  # (N, 10)
        return logits


class Best(StagedModel):
    """The most accurate built-in (``best``): a small modern CNN of 3×3 convolutions, each
    followed by BatchNorm and ReLU, then global average pooling and a small fc.

    conv → BN → ReLU at 28×28 → maxpool 2 → twice at 14×14 → maxpool 2 → twice at 7×7 →
    global average pool → fc → ReLU → dropout → fc 10. Widths ``width``, ``3·width/2`` and
    ``3·width``: 48 rather than 64 channels at 14×14 trains 4× faster under bf16 on CPU
    (oneDNN's 64-channel 14×14 backward is slow there; measured, see the best recipe). The
    convs have no bias: the BatchNorm after each adds its own shift.
    """

    stage_names = (
        *(f"{k}{i}" for i in (1,) for k in ("conv", "bn", "relu")),
        "pool1",
        *(f"{k}{i}" for i in (2, 3) for k in ("conv", "bn", "relu")),
        "pool2",
        *(f"{k}{i}" for i in (4, 5) for k in ("conv", "bn", "relu")),
        "pool3",
        "fc1",
        "logits",
    )

    def __init__(
        self,
        width: int = 32,
        hidden: int = 128,
        dropout: float = 0.2,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self._remember(width=width, hidden=hidden, dropout=dropout, num_classes=num_classes)
        w1, w2, w3 = width, width * 3 // 2, width * 3
        widths = [(1, w1), (w1, w2), (w2, w2), (w2, w3), (w3, w3)]
        for i, (c_in, c_out) in enumerate(widths, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(c_in, c_out, 3, padding=1, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(c_out))
            setattr(self, f"relu{i}", nn.ReLU())
        self.pool1 = nn.MaxPool2d(2)
        self.pool2 = nn.MaxPool2d(2)
        self.pool3 = nn.AdaptiveAvgPool2d(1)  # global average: one number per channel
        self.fc1 = LinearReLU(w3, hidden)
        self.dropout = nn.Dropout(dropout)
        self.logits = nn.Linear(hidden, num_classes)

    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        conv, bn, relu = (self.get_submodule(f"{k}{i}") for k in ("conv", "bn", "relu"))
        out: torch.Tensor = relu(bn(conv(x)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self._block(1, x))  # (N, W, 14, 14)
        x = self.pool2(self._block(3, self._block(2, x)))  # (N, 3W/2, 7, 7)
        x = self.pool3(self._block(5, self._block(4, x)))  # (N, 3W, 1, 1)
        x = self.fc1(x.flatten(1))  # (N, hidden)
        logits: torch.Tensor = self.logits(self.dropout(x))  # (N, 10)
        return logits


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: how to build an architecture and what it is."""

    name: str
    factory: Callable[..., StagedModel]
    defaults: dict[str, Any]
    description: str
    recipe: str = "fast"  # the training recipe `cnnscope train --model NAME` uses unless told

    def build(self, **overrides: Any) -> StagedModel:
        unknown = set(overrides) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"{self.name} takes no option {', '.join(sorted(unknown))}; "
                f"valid: {', '.join(self.defaults) or '(none)'}"
            )
        model = self.factory(**{**self.defaults, **overrides})
        model.arch = self.name
        return model


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "deep_mnist",
            DeepMNIST,
            {"conv1": 32, "conv2": 64, "hidden": 1024, "dropout": 0.5, "num_classes": 10},
            'TensorFlow "Deep MNIST for Experts": conv32 → pool → conv64 → pool → fc1024 → fc10',
        ),
        ModelSpec(
            "hvass",
            DeepMNIST,
            {"conv1": 16, "conv2": 36, "hidden": 128, "dropout": 0.0, "num_classes": 10},
            "Hvass-Labs tutorial 02: conv16 → pool → conv36 → pool → fc128 → fc10",
        ),
        ModelSpec(
            "single_conv",
            SingleConv,
            {"conv1": 32, "hidden": 1000, "dropout": 0.0, "num_classes": 10},
            "one conv layer: conv32 → pool → fc1000 → fc10",
        ),
        ModelSpec(
            "lenet5",
            LeNet5,
            {"num_classes": 10},
            "LeNet-5 for 28×28: conv6 → pool → conv16 → pool → fc120 → fc84 → fc10",
        ),
        ModelSpec(
            "best",
            Best,
            {"width": 32, "hidden": 128, "dropout": 0.2, "num_classes": 10},
            "the most accurate: 3×3 conv+BN 32 → pool → 48, 48 → pool → 96, 96 → global"
            " average → fc128 → fc10",
            recipe="best",
        ),
    ]
}
DEFAULT_MODEL = "deep_mnist"


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; an unknown name lists the valid ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}") from None


def build_model(name: str = DEFAULT_MODEL, **overrides: Any) -> StagedModel:
    """A freshly initialised model of architecture ``name``."""
    return get_spec(name).build(**overrides)
