"""StageInfo: kinds, shapes and receptive fields read from modules, never from names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnscope.models import StagedModel, activation_stage, build_model, stage_infos


def test_deep_mnist_stages_known_answers() -> None:
    infos = stage_infos(build_model("deep_mnist"))
    got = {n: (i.kind, i.shape, i.rf_size, i.rf_stride, i.parent) for n, i in infos.items()}
    # Receptive fields by hand: 5×5 conv (5), pool 2 (+1, stride 2), 5×5 conv (+4·2), pool (+2).
    assert got == {
        "conv1": ("conv", (32, 28, 28), 5, 1, None),
        "relu1": ("act", (32, 28, 28), 5, 1, "conv1"),
        "pool1": ("pool", (32, 14, 14), 6, 2, "conv1"),
        "conv2": ("conv", (64, 14, 14), 14, 2, None),
        "relu2": ("act", (64, 14, 14), 14, 2, "conv2"),
        "pool2": ("pool", (64, 7, 7), 16, 4, "conv2"),
        "fc1": ("fc", (1024,), None, None, None),
        "logits": ("logits", (10,), None, None, None),
    }


class _Odd(StagedModel):
    """Names that say nothing of kinds, BatchNorm, GELU, a strided conv, adaptive pooling."""

    stage_names = ("a", "b", "c", "d", "e", "f")

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.b = nn.BatchNorm2d(4)
        self.c = nn.GELU()
        self.d = nn.AdaptiveAvgPool2d(1)
        self.e = nn.Linear(4, 8)
        self.f = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.d(self.c(self.b(self.a(x)))).flatten(1)
        return self.f(self.e(x))


def test_kinds_come_from_modules_not_names() -> None:
    infos = stage_infos(_Odd())
    assert [i.kind for i in infos.values()] == ["conv", "norm", "act", "pool", "fc", "logits"]
    assert (infos["a"].rf_size, infos["a"].rf_stride, infos["a"].shape) == (3, 2, (4, 14, 14))
    assert infos["c"].parent == "a" and infos["b"].parent == "a"
    assert infos["d"].rf_size is None  # adaptive pooling: every unit sees the whole image
    assert activation_stage(_Odd(), "a") == "c"


@pytest.mark.parametrize("name", ["deep_mnist", "hvass", "single_conv", "lenet5", "best"])
def test_rf_covers_the_image_at_the_last_pool(name: str) -> None:
    model = build_model(name)
    infos = [i for i in stage_infos(model).values() if i.spatial]
    sizes = [i.rf_size for i in infos if i.rf_size is not None]  # None: a global pool
    first = model.get_submodule(model.stage_names[0])
    assert isinstance(first, nn.Conv2d)
    # Grows monotonically from the first conv's kernel (5×5; best's 3×3).
    assert sizes == sorted(sizes) and sizes[0] == first.kernel_size[0]


def test_tracing_runs_where_the_model_is() -> None:
    # A model on a GPU traced with a CPU probe failed every view (found on a GPU); the
    # meta device stands in for one here.
    model = build_model("best").to("meta")
    assert stage_infos(model)["conv1"].shape == (32, 28, 28)


def test_tracing_leaves_no_hooks_and_keeps_mode() -> None:
    model = build_model("lenet5").train()
    stage_infos(model)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
