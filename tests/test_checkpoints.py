from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnscope import checkpoints
from cnnscope.checkpoints import (
    CheckpointError,
    load_training_state,
    load_weights,
    read_metadata,
    save_training_state,
    save_weights,
)
from cnnscope.models import build_model


def test_round_trip_float32(tmp_path: Path) -> None:
    model = build_model("hvass")
    path = save_weights(model, tmp_path / "w.safetensors", {"metrics": {"test_accuracy": 0.5}})
    loaded, meta = load_weights(path)
    assert loaded.arch == "hvass" and not loaded.training
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert meta["metrics"]["test_accuracy"] == 0.5
    assert meta["model"] == "hvass" and meta["version"] and meta["created_at"]
    assert len(meta["weights_sha256"]) == 64


def test_float16_storage_loads_as_float32(tmp_path: Path) -> None:
    model = build_model("lenet5")
    path = save_weights(model, tmp_path / "w.safetensors", dtype=torch.float16)
    loaded, meta = load_weights(path)
    assert meta["dtype"] == "float16"
    w = loaded.conv1.weight
    assert w.dtype == torch.float32
    assert torch.allclose(w, model.conv1.weight, atol=1e-3)


def test_architecture_mismatch_names_both(tmp_path: Path) -> None:
    path = save_weights(build_model("lenet5"), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="for 'lenet5', not for 'deep_mnist'"):
        load_weights(path, expect="deep_mnist")


def test_tensors_for_other_shapes_are_reported(tmp_path: Path) -> None:
    model = build_model("deep_mnist", hidden=64)
    path = save_weights(model, tmp_path / "w.safetensors")
    # Pretend the header says default options: the fc1 shapes then do not fit.
    monkey_header = {"model": "deep_mnist", "config": {}}
    orig = checkpoints._read_header
    checkpoints._read_header = lambda p: monkey_header  # type: ignore[assignment]
    try:
        with pytest.raises(CheckpointError, match=r"shape mismatch fc1\.weight"):
            load_weights(path)
    finally:
        checkpoints._read_header = orig


def test_corrupt_file_names_file(tmp_path: Path) -> None:
    path = save_weights(build_model("lenet5"), tmp_path / "w.safetensors")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"w\.safetensors: not a readable safetensors"):
        load_weights(path)


def test_mismatched_sidecar_detected(tmp_path: Path) -> None:
    a = save_weights(build_model("lenet5"), tmp_path / "a.safetensors")
    b = save_weights(build_model("lenet5"), tmp_path / "b.safetensors")
    a.with_suffix(".json").write_text(b.with_suffix(".json").read_text())
    with pytest.raises(CheckpointError, match="does not match"):
        load_weights(a)


def test_failed_write_leaves_previous_intact(tmp_path: Path, monkeypatch) -> None:
    first = build_model("lenet5")
    path = save_weights(first, tmp_path / "w.safetensors", {"n": 1})
    before = path.read_bytes()

    def exploding_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints, "save_file", exploding_save)
    with pytest.raises(OSError, match="disk full"):
        save_weights(build_model("lenet5"), path, {"n": 2})
    assert path.read_bytes() == before
    assert read_metadata(path)["n"] == 1
    assert {p.name for p in tmp_path.iterdir()} == {"w.safetensors", "w.json"}  # no temp left
    load_weights(path)


def test_training_state_round_trip(tmp_path: Path) -> None:
    model = build_model("lenet5")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.rand(4, 1, 28, 28)).sum().backward()
    opt.step()
    torch.manual_seed(123)
    save_training_state(tmp_path / "s.safetensors", model, opt, {"step": 7})
    expected_rand = torch.rand(3)

    other = build_model("lenet5")
    other_opt = torch.optim.AdamW(other.parameters(), lr=1e-3)
    info = load_training_state(tmp_path / "s.safetensors", other, other_opt)
    assert info == {"step": 7}
    assert torch.equal(torch.rand(3), expected_rand)  # RNG restored
    assert torch.equal(other.conv1.weight, model.conv1.weight)
    s1, s2 = opt.state_dict()["state"][0], other_opt.state_dict()["state"][0]
    assert torch.equal(s1["exp_avg"], s2["exp_avg"]) and float(s1["step"]) == float(s2["step"])


def test_weights_json_is_plain_json(tmp_path: Path) -> None:
    path = save_weights(build_model("lenet5"), tmp_path / "w.safetensors", {"x": [1, 2]})
    assert json.loads(path.with_suffix(".json").read_text())["x"] == [1, 2]
