from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnscope.analysis.activations import StageRecorder, record
from cnnscope.models import build_model


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_record_every_stage_consistent() -> None:
    model = build_model("deep_mnist")
    x = torch.rand(2, 1, 28, 28)
    out = record(model, x)
    assert list(out) == list(model.stage_names)
    assert torch.equal(out["relu1"], F.relu(out["conv1"]))
    assert torch.equal(out["pool1"], F.max_pool2d(out["relu1"], 2))
    assert torch.equal(out["pool2"], F.max_pool2d(F.relu(out["conv2"]), 2))
    assert torch.allclose(out["logits"], model.eval()(x))
    assert _hook_count(model) == 0


def test_hooks_released_after_exception() -> None:
    model = build_model("lenet5")
    with pytest.raises(RuntimeError), StageRecorder(model) as rec:
        model(torch.rand(1, 1, 28, 28))
        assert _hook_count(model) == len(model.stage_names)
        raise RuntimeError("boom")
    assert "fc2" in rec.outputs
    assert _hook_count(model) == 0


def test_unknown_stage_rejected_before_hooking() -> None:
    model = build_model("hvass")
    with pytest.raises(ValueError, match="valid: conv1"):
        StageRecorder(model, ["conv3"])
    assert _hook_count(model) == 0


def test_record_keeps_training_mode() -> None:
    model = build_model("deep_mnist").train()
    record(model, torch.rand(1, 1, 28, 28), ["fc1"])
    assert model.training
