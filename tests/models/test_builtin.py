from __future__ import annotations

import pytest
import torch

from cnnscope.analysis.activations import describe, stage_shapes
from cnnscope.models import MODELS, build_model, count_parameters, resolve_stage

EXPECTED = {
    "deep_mnist": {
        "conv1": (32, 28, 28),
        "relu1": (32, 28, 28),
        "pool1": (32, 14, 14),
        "conv2": (64, 14, 14),
        "relu2": (64, 14, 14),
        "pool2": (64, 7, 7),
        "fc1": (1024,),
        "logits": (10,),
    },
    "hvass": {
        "conv1": (16, 28, 28),
        "relu1": (16, 28, 28),
        "pool1": (16, 14, 14),
        "conv2": (36, 14, 14),
        "relu2": (36, 14, 14),
        "pool2": (36, 7, 7),
        "fc1": (128,),
        "logits": (10,),
    },
    "single_conv": {
        "conv1": (32, 28, 28),
        "relu1": (32, 28, 28),
        "pool1": (32, 14, 14),
        "fc1": (1000,),
        "logits": (10,),
    },
    "lenet5": {
        "conv1": (6, 28, 28),
        "relu1": (6, 28, 28),
        "pool1": (6, 14, 14),
        "conv2": (16, 10, 10),
        "relu2": (16, 10, 10),
        "pool2": (16, 5, 5),
        "fc1": (120,),
        "fc2": (84,),
        "logits": (10,),
    },
    "best": {
        **{f"{k}1": (32, 28, 28) for k in ("conv", "bn", "relu")},
        "pool1": (32, 14, 14),
        **{f"{k}{i}": (48, 14, 14) for i in (2, 3) for k in ("conv", "bn", "relu")},
        "pool2": (48, 7, 7),
        **{f"{k}{i}": (96, 7, 7) for i in (4, 5) for k in ("conv", "bn", "relu")},
        "pool3": (96, 1, 1),
        "fc1": (128,),
        "logits": (10,),
    },
}


@pytest.mark.parametrize("name", list(MODELS))
def test_stage_names_and_shapes(name: str) -> None:
    model = build_model(name)
    assert stage_shapes(model) == EXPECTED[name]
    assert list(model.stage_names) == list(EXPECTED[name])
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_parameter_counts() -> None:
    # conv1 5·5·32+32, conv2 5·5·32·64+64, fc1 3136·1024+1024, logits 1024·10+10
    assert count_parameters(build_model("deep_mnist")) == 832 + 51_264 + 3_212_288 + 10_250
    assert describe("lenet5")["parameters"] == 61_706
    # best: 3×3 convs without bias, BatchNorm (γ, β) after each, fc 96 → 128 → 10
    convs = 9 * (1 * 32 + 32 * 48 + 48 * 48 + 48 * 96 + 96 * 96)
    norms = 2 * (32 + 48 + 48 + 96 + 96)
    assert count_parameters(build_model("best")) == convs + norms + 96 * 128 + 128 + 1290


def test_best_stages_are_conv_norm_act_and_eval_batchnorm_is_per_image() -> None:
    from cnnscope.models import activation_stage, stage_infos

    model = build_model("best")
    infos = stage_infos(model)
    kinds = [infos[s].kind for s in ("conv1", "bn1", "relu1", "pool1", "fc1", "logits")]
    assert kinds == ["conv", "norm", "act", "pool", "fc", "logits"]
    assert infos["bn4"].parent == "conv4" and infos["pool2"].parent == "conv3"
    assert [activation_stage(model, s) for s in ("conv5", "bn5", "bn1", "pool3")] == [
        "relu5",
        "relu5",
        "relu1",
        "pool3",
    ]
    # BatchNorm uses batch statistics in training, its running ones in eval: the views
    # (which put the model in eval mode) see one image's maps independent of the others.
    x = torch.rand(4, 1, 28, 28)
    model.train()
    model(x)
    assert not torch.allclose(model(x[:2])[:1], model(x)[:1], atol=1e-4)
    model.eval()
    assert torch.allclose(model(x[:1]), model(x)[:1], atol=1e-5)


def test_unknown_model_lists_valid() -> None:
    with pytest.raises(ValueError, match="deep_mnist, hvass, single_conv, lenet5"):
        build_model("resnet")


def test_unknown_stage_lists_valid() -> None:
    with pytest.raises(ValueError, match="valid: conv1, relu1, pool1, fc1, logits"):
        resolve_stage(build_model("single_conv"), "conv2")


def test_unknown_option() -> None:
    with pytest.raises(ValueError, match="takes no option width"):
        build_model("deep_mnist", width=3)


def test_dropout_only_in_training() -> None:
    model = build_model("deep_mnist")
    x = torch.rand(4, 1, 28, 28)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_activation_stage_maps_conv_to_its_relu() -> None:
    from cnnscope.models import activation_stage

    deep, single = build_model("deep_mnist"), build_model("single_conv")
    assert [activation_stage(deep, s) for s in ("conv1", "conv2", "pool1", "fc1", "logits")] == [
        "relu1",
        "relu2",
        "pool1",
        "fc1",
        "logits",
    ]
    assert activation_stage(single, "conv1") == "relu1"
