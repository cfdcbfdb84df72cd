"""The Python API: cnnscope.load(...) and the Model's methods, built-in and your own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.checkpoints import save_weights
from cnnscope.models import load_foreign

SPEC = f"{Path(__file__).parent / 'models' / 'unlike_ours.py'}:UnlikeOurs"


def _digit() -> np.ndarray:
    image = np.zeros((28, 28), np.float32)
    image[5:23, 13:16] = 1.0  # a "1"
    return image


def test_import_does_not_load_torch() -> None:
    code = "import sys, cnnscope; print('torch' in sys.modules, callable(cnnscope.load))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_a_built_in() -> None:
    m = cnnscope.load("deep_mnist")
    p = m.predict(_digit())
    assert p.shape == (10,) and abs(p.sum() - 1) < 1e-5 and p.argmax() == 1
    assert m.predict(np.stack([_digit()] * 3)).shape == (3, 10)
    assert m.predict((_digit() * 255).astype(np.uint8)).argmax() == 1  # grey levels too
    acts = m.stages(_digit())
    assert list(acts) == list(m.stage_names) and acts["conv1"].shape == (32, 28, 28)
    a = m.explain(_digit(), method="gradcam")
    assert a.map.shape == (28, 28) and a.target == 1


def test_your_own_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = save_weights(load_foreign(SPEC), tmp_path / "own.safetensors")
    m = cnnscope.load(SPEC, weights=weights, normalize=(0.1307, 0.3081))
    assert m.num_classes == 10 and m.stage_names[-1] == "head.fc"
    with torch.no_grad():
        x = torch.as_tensor(_digit())[None, None]
        want = torch.softmax(m.module.net((x - 0.1307) / 0.3081), 1)[0].numpy()
    np.testing.assert_allclose(m.predict(_digit()), want, rtol=1e-5, atol=1e-6)
    assert m.stages(_digit())["features.7"].shape == (16, 4, 4)
    ig = m.explain(_digit(), method="ig", steps=16)
    assert ig.map.shape == (28, 28) and np.isfinite(ig.map).all()
    images = m.features("features.0", units=[0, 3], steps=8)
    assert images.shape == (2, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert m.features("prob", units=[2], steps=8).shape == (1, 28, 28)
    # Every method the CLI and the page offer, and only those.
    assert m.features("prob", units=[2], steps=4, method="prior").shape == (1, 28, 28)
    with pytest.raises(ValueError, match="valid: regularized, prior, plain"):
        m.features("prob", units=[2], method="deepdream")


def test_wrong_sized_images_are_refused() -> None:
    m = cnnscope.load("lenet5")
    with pytest.raises(ValueError, match="takes 28×28"):
        m.predict(np.zeros((32, 32)))


def test_evaluate() -> None:
    rep = cnnscope.load("deep_mnist").evaluate()  # the repository's data/mnist
    assert rep.accuracy > 0.98 and len(rep.labels) == 10_000


def test_load_model_still_works() -> None:
    model, meta = cnnscope.load_model("lenet5")
    assert meta["model"] == "lenet5" and model.stage_names[-1] == "logits"


def test_a_model_of_another_input_size(tmp_path: Path) -> None:
    """Nothing assumes 28×28 or 10 classes: a 32×24 input, 3 classes, through every view."""
    (tmp_path / "tall.py").write_text(
        "from torch import nn\n\n"
        "class Tall(nn.Module):\n"
        "    input_shape = (1, 32, 24)\n\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 4, 3, padding=1)\n"
        "        self.act = nn.ReLU()\n"
        "        self.pool = nn.MaxPool2d(2)\n"
        "        self.fc = nn.Linear(4 * 16 * 12, 3)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))\n"
    )
    m = cnnscope.load(f"{tmp_path / 'tall.py'}:Tall")
    image = np.zeros((32, 24), np.float32)
    image[4:28, 10:14] = 1
    assert m.input_shape == (1, 32, 24) and m.num_classes == 3
    assert m.predict(image).shape == (3,)
    assert m.stages(image)["pool"].shape == (4, 16, 12)
    for method in ("saliency", "ig", "gradcam", "occlusion"):
        assert m.explain(image, method=method).map.shape == (32, 24), method
    assert m.features("conv", units=[0, 1], steps=3).shape == (2, 32, 24)
    assert m.features("prob", units=[2], steps=3, method="plain").shape == (1, 32, 24)
    from cnnscope.analysis.arithmetic import unit_arithmetic
    from cnnscope.analysis.features import RenderConfig, layer_images

    fourier = layer_images(m.module, "fc", [0], RenderConfig(steps=3, fourier=True))
    assert fourier.shape == (1, 32, 24)
    a = unit_arithmetic(m.module, image, "conv", channel=1, y=31, x=23)
    assert (
        a.input_stage == "input" and abs(a.value - float(m.stages(image)["conv"][1, 31, 23])) < 1e-5
    )


@pytest.mark.parametrize("scale", [255.0, -1.0])
def test_images_outside_0_1_are_refused(scale: float) -> None:
    # Floats in 0–255 went in unscaled: every digit came back as one class at p = 1.0.
    m = cnnscope.load("lenet5")
    with pytest.raises(ValueError, match=r"give floats in \[0, 1\] or uint8"):
        m.predict(_digit() * scale)
    with pytest.raises(ValueError, match="give floats"):
        m.explain(_digit() * scale)
