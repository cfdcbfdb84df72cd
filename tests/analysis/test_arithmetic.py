from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cnnscope
from cnnscope.analysis.activations import record
from cnnscope.analysis.arithmetic import unit_arithmetic
from cnnscope.models import build_model


@pytest.fixture(scope="module")
def deep():
    return cnnscope.load_model("deep_mnist")[0]


@pytest.fixture(scope="module")
def seven(mnist) -> np.ndarray:
    return mnist.test_images[0].numpy().astype(np.float32) / 255


def _recorded(model, image):
    return {
        k: v[0].numpy()
        for k, v in record(model, torch.from_numpy(image).view(1, 1, 28, 28)).items()
    }


@pytest.mark.parametrize(
    ("stage", "c", "y", "x"),
    [("conv1", 5, 0, 0), ("conv1", 3, 14, 13), ("conv2", 17, 6, 9), ("conv2", 0, 13, 0)],
)
def test_conv_sum_plus_bias_is_the_recorded_value(deep, seven, stage, c, y, x) -> None:
    a = unit_arithmetic(deep, seven, stage, c, y, x)
    want = _recorded(deep, seven)[stage][c, y, x]
    assert a.value == float(want)
    assert abs(a.sum + a.bias - want) < 1e-5
    assert abs(sum(a.partials) - a.sum) < 1e-9
    # The listed terms and the rest add up to the sum as well.
    assert abs(sum(t["product"] for t in a.top) + a.rest - a.sum) < 1e-9
    module = deep.get_submodule(stage)
    assert a.terms == module.weight[0].numel()
    assert a.bias == float(module.bias[c].detach())
    for p in a.patches:
        assert np.allclose(np.multiply(p["input"], p["kernel"]), p["products"])
        assert np.allclose(p["kernel"], module.weight[c, p["channel"]].detach().numpy())


def test_conv1_patch_is_the_image_with_padding_zeros(deep, seven) -> None:
    a = unit_arithmetic(deep, seven, "conv1", 0, 0, 1)
    assert a.input_stage == "input" and a.origin == [-2, -1] and a.kernel == [5, 5]
    patch = np.array(a.patches[0]["input"])
    assert (patch[:2] == 0).all() and (patch[:, 0] == 0).all()  # rows −2, −1 and column −1
    assert np.allclose(patch[2:, 1:], seven[0:3, 0:4])


def test_conv2_reads_pool1(deep, seven) -> None:
    a = unit_arithmetic(deep, seven, "conv2", 4, 7, 7)
    pool1 = _recorded(deep, seven)["pool1"]
    assert a.input_stage == "pool1" and a.input_shape == [32, 14, 14]
    assert len(a.partials) == 32 and len(a.patches) == 4
    best = a.patches[0]
    assert np.allclose(best["input"], pool1[best["channel"], 5:10, 5:10])
    assert abs(best["sum"]) == max(abs(p) for p in a.partials)


def test_relu_and_pool_winner(deep, seven) -> None:
    rec = _recorded(deep, seven)
    for c, y, x in [(0, 10, 11), (7, 20, 15), (31, 27, 27)]:
        a = unit_arithmetic(deep, seven, "conv1", c, y, x)
        assert a.activation == {
            "stage": "relu1",
            "module": "ReLU",
            "value": float(rec["relu1"][c, y, x]),
        }
        pool = a.pool
        assert pool is not None and pool["stage"] == "pool1"
        assert (pool["y"], pool["x"]) == (y // 2, x // 2)
        window = rec["relu1"][c, y // 2 * 2 : y // 2 * 2 + 2, x // 2 * 2 : x // 2 * 2 + 2]
        k = int(np.argmax(window))
        assert pool["winner"] == [y // 2 * 2 + k // 2, x // 2 * 2 + k % 2]
        assert pool["value"] == float(rec["pool1"][c, y // 2, x // 2]) == float(window.max())
        assert pool["won"] == (pool["winner"] == [y, x])


def test_fc_unit_and_logits_softmax(deep, seven) -> None:
    rec = _recorded(deep, seven)
    a = unit_arithmetic(deep, seven, "fc1", 12)
    assert a.input_stage == "pool2" and a.terms == 64 * 7 * 7
    assert abs(max(a.sum + a.bias, 0) - rec["fc1"][12]) < 1e-5
    assert a.activation is not None and a.activation["module"] == "ReLU"
    assert len(a.top) == 12 and abs(sum(t["product"] for t in a.top) + a.rest - a.sum) < 1e-9
    logit = unit_arithmetic(deep, seven, "logits", 7)
    assert logit.input_stage == "fc1" and logit.activation is None
    assert abs(logit.sum + logit.bias - rec["logits"][7]) < 1e-5
    soft = logit.softmax
    assert soft is not None
    want = F.softmax(torch.from_numpy(rec["logits"]).double(), 0).numpy()
    assert np.allclose(soft["probabilities"], want) and int(np.argmax(soft["probabilities"])) == 7


def test_valid_conv_and_lenet_without_padding() -> None:
    model = build_model("lenet5").eval()
    image = np.random.default_rng(0).random((28, 28), dtype=np.float32)
    a = unit_arithmetic(model, image, "conv2", 15, 9, 0)
    assert a.padding == [0, 0] and a.origin == [9, 0] and a.input_stage == "pool1"
    assert abs(a.sum + a.bias - _recorded(model, image)["conv2"][15, 9, 0]) < 1e-5


def test_errors_name_stage_and_position(deep, seven) -> None:
    with pytest.raises(ValueError, match="valid: conv1, conv2, fc1, logits"):
        unit_arithmetic(deep, seven, "pool1")
    with pytest.raises(ValueError, match="x 28 is outside conv1"):
        unit_arithmetic(deep, seven, "conv1", 0, 0, 28)
    with pytest.raises(ValueError, match="channel 10"):
        unit_arithmetic(deep, seven, "logits", 10)


def test_batchnorm_between_conv_and_relu(deep, seven) -> None:
    model = build_model("best")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # statistics and affine parameters far from the identity
        for bn in (model.bn1, model.bn2):
            c = bn.num_features
            bn.running_mean.copy_(torch.randn(c, generator=g))
            bn.running_var.copy_(torch.rand(c, generator=g) + 0.1)
            bn.weight.copy_(torch.randn(c, generator=g))
            bn.bias.copy_(torch.randn(c, generator=g))
    model.eval()
    rec = _recorded(model, seven)
    for stage, norm, relu, (c, y, x) in [
        ("conv1", "bn1", "relu1", (3, 14, 13)),
        ("conv2", "bn2", "relu2", (7, 5, 6)),
    ]:
        a = unit_arithmetic(model, seven, stage, c, y, x)
        assert a.bias == 0.0 and abs(a.sum - rec[stage][c, y, x]) < 1e-5  # convs without bias
        n = a.norm
        assert n is not None and (n["stage"], n["module"]) == (norm, "BatchNorm2d")
        assert n["value"] == float(rec[norm][c, y, x])
        assert abs(a.value * n["scale"] + n["shift"] - n["value"]) < 1e-5
        assert a.activation is not None and a.activation["stage"] == relu
        assert abs(a.activation["value"] - max(0.0, n["value"])) < 1e-6
    assert unit_arithmetic(model, seven, "conv1", 3, 14, 13).pool["stage"] == "pool1"
    # A model without normalisation has none to show.
    assert unit_arithmetic(deep, seven, "conv1", 0, 10, 11).norm is None
