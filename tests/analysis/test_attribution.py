from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cnnscope
from cnnscope.analysis.attribution import METHODS, Explainer, explain
from cnnscope.models import StagedModel

PIXEL = (10, 17)


class OnePixel(StagedModel):
    """Logit 3 = 5 × pixel (10, 17); every other logit is 0."""

    stage_names = ("conv1", "relu1", "logits")
    arch = "one_pixel"

    def __init__(self) -> None:
        super().__init__()
        self._remember()
        self.conv1 = nn.Conv2d(1, 1, 1)
        self.relu1 = nn.ReLU()
        self.logits = nn.Linear(784, 10)
        with torch.no_grad():
            self.conv1.weight.fill_(1.0)
            self.conv1.bias.zero_()
            self.logits.weight.zero_()
            self.logits.bias.zero_()
            self.logits.weight[3, PIXEL[0] * 28 + PIXEL[1]] = 5.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.relu1(self.conv1(x)).flatten(1))


def _toy_input() -> np.ndarray:
    x = np.random.default_rng(0).uniform(0, 0.1, (28, 28)).astype(np.float32)
    x[PIXEL] = 1.0
    return x


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize("method", METHODS)
def test_every_method_finds_the_one_pixel(method: str) -> None:
    model = OnePixel()
    a = explain(model, _toy_input(), method, target=3, layer="conv1")
    assert a.map.shape == (28, 28) and np.isfinite(a.map).all()
    assert a.map[PIXEL] == pytest.approx(np.abs(a.map).max(), rel=1e-5)
    if method in ("saliency", "gradxinput", "ig", "smoothgrad"):
        # Gradient-based maps put nothing anywhere else.
        rest = np.abs(a.map).copy()
        rest[PIXEL] = 0
        assert rest.max() <= 1e-6 * np.abs(a.map).max()
    assert _hooks(model) == 0


def test_integrated_gradients_completeness() -> None:
    model, _ = cnnscope.load_model()
    x = cnnscope.load_mnist().test_images[0].numpy() / 255.0
    a = Explainer(model, "ig", steps=64)(x, target=7)
    with torch.no_grad():
        fx = model(torch.tensor(x, dtype=torch.float32).view(1, 1, 28, 28))[0, 7]
        f0 = model(torch.zeros(1, 1, 28, 28))[0, 7]
    gap = float(fx - f0)
    assert a.map.sum() == pytest.approx(gap, rel=0.01)
    assert a.details["baseline"].startswith("black image")


def test_default_target_is_prediction_and_checks() -> None:
    model = OnePixel()
    a = explain(model, _toy_input(), "saliency")
    assert a.target == 3 and np.argmax(a.probabilities) == 3
    with pytest.raises(ValueError, match="valid: saliency"):
        Explainer(model, "lime")
    with pytest.raises(ValueError, match="outside 0–9"):
        explain(model, _toy_input(), "saliency", target=10)
    with pytest.raises(ValueError, match="NaN"):
        explain(model, np.full((28, 28), np.nan), "saliency")


def test_gradcam_uses_relu_of_a_conv_stage() -> None:
    model, _ = cnnscope.load_model()
    e = Explainer(model, "gradcam", layer="conv2")
    assert e.layer == "relu2"
    x = cnnscope.load_mnist().test_images[0].numpy() / 255.0
    assert e(x).map.max() > 0
    with pytest.raises(ValueError, match=r"needs a stage with maps.*valid: conv1"):
        Explainer(model, "gradcam", layer="fc1")


def test_gradcam_defaults_to_the_models_last_conv() -> None:
    # single_conv has no conv2: a default hard-wired to "conv2" failed on it.
    from cnnscope.models import build_model

    assert Explainer(build_model("single_conv"), "gradcam").layer == "relu1"
    assert Explainer(build_model("lenet5"), "gradcam").layer == "relu2"
