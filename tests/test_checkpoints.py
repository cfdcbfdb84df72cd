from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from cnnscope import checkpoints
from cnnscope.checkpoints import (
    CheckpointError,
    load_training_state,
    load_weights,
    read_metadata,
    save_training_state,
    save_weights,
)
from cnnscope.models import MODELS, ModelSpec, build_model


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


def _crafted(path: Path, header: object, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """A safetensors file with hvass's tensors (or ``tensors``) under any cnnscope header."""
    state = tensors or {k: v.contiguous() for k, v in build_model("hvass").state_dict().items()}
    text = header if isinstance(header, str) else json.dumps(header)
    save_file(state, str(path), metadata={"cnnscope": text})
    return path


@pytest.fixture
def built_on(monkeypatch) -> list[str]:
    """The device of every hvass construction: a crafted header must reach only 'meta'."""
    devices: list[str] = []
    real = MODELS["hvass"]

    def factory(**options):
        devices.append(torch.empty(0).device.type)
        return real.factory(**options)

    spy = ModelSpec(real.name, factory, real.defaults, real.description)
    monkeypatch.setitem(MODELS, "hvass", spy)
    return devices


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"hidden": 10_000_000}, r"hidden=10000000 outside 1–65536"),  # ~125 GB for fc1
        ({"hidden": "many"}, r"hidden='many' is not an integer"),
        ({"hidden": 1.5}, r"hidden=1.5 is not an integer"),
        ({"conv1": True}, r"conv1=True is not an integer"),
        ({"conv2": 0}, r"conv2=0 outside"),
        ({"dropout": 7}, r"dropout=7 outside 0–1"),
        ({"dropout": "half"}, r"dropout='half' is not a number"),
        ({"layers": 3}, r"unknown option 'layers'"),
        ([16, 36], r"header 'config' is not a JSON object"),
    ],
)
def test_crafted_options_refused_before_building(tmp_path, built_on, config, message) -> None:
    path = _crafted(tmp_path / "w.safetensors", {"model": "hvass", "config": config})
    built_on.clear()  # making the file built one
    with pytest.raises(CheckpointError, match=rf"w\.safetensors: .*{message}"):
        load_weights(path)
    assert built_on == []


def test_header_checked_on_meta_device_before_allocating(tmp_path, built_on) -> None:
    # In range, but the file's tensors are for hidden=128: found on meta, nothing allocated.
    header = {"model": "hvass", "config": {"hidden": 60_000}}
    path = _crafted(tmp_path / "w.safetensors", header)
    built_on.clear()  # making the file built one
    with pytest.raises(CheckpointError, match=r"shape mismatch fc1\.weight \(128, 1764\)"):
        load_weights(path)
    assert built_on == ["meta"]
    # A sound file: checked on meta, then built for real once.
    ok = save_weights(build_model("hvass"), tmp_path / "ok.safetensors")
    built_on.clear()
    load_weights(ok)
    assert built_on == ["meta", "cpu"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("{not json", "header is not JSON"),
        ("[1, 2]", "header is not a JSON object"),
        ({"model": 5}, "made for architecture 5"),
        ({"model": ["hvass"]}, "made for architecture"),
    ],
)
def test_unreadable_headers_named(tmp_path: Path, header, message) -> None:
    path = _crafted(tmp_path / "w.safetensors", header)
    with pytest.raises(CheckpointError, match=message):
        load_weights(path)


def test_integer_tensors_refused(tmp_path: Path) -> None:
    state = {
        k: torch.zeros(v.shape, dtype=torch.int32)
        for k, v in build_model("hvass").state_dict().items()
    }
    path = _crafted(tmp_path / "w.safetensors", {"model": "hvass", "config": {}}, state)
    with pytest.raises(CheckpointError, match="not floating point"):
        load_weights(path)


def test_sidecar_not_an_object(tmp_path: Path) -> None:
    path = save_weights(build_model("lenet5"), tmp_path / "w.safetensors")
    path.with_suffix(".json").write_text("[]")
    with pytest.raises(CheckpointError, match=r"w\.json: not a JSON object"):
        load_weights(path)


def test_incomplete_training_state_named(tmp_path: Path) -> None:
    model = build_model("lenet5")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    path = save_training_state(tmp_path / "s.safetensors", model, opt, {"step": 7})
    tensors = {k: v for k, v in load_file(str(path)).items() if k != "rng/torch"}
    meta = {"cnnscope": json.dumps({"model": "lenet5", "config": {}})}
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=r"s\.safetensors: incomplete training state"):
        load_training_state(path, model, opt)


def test_batchnorm_counts_stay_integers_in_float16_files(tmp_path: Path) -> None:
    model = build_model("best")
    model.train()
    model(torch.rand(8, 1, 28, 28))  # one batch: running statistics and a count of 1
    path = save_weights(model, tmp_path / "w.safetensors", dtype=torch.float16)
    from safetensors.torch import load_file

    raw = load_file(str(path))
    assert raw["bn1.num_batches_tracked"].dtype == torch.int64
    assert raw["bn1.running_var"].dtype == torch.float16
    loaded, meta = load_weights(path)
    assert meta["dtype"] == "float16"
    assert int(loaded.bn1.num_batches_tracked) == 1
    assert torch.allclose(loaded.bn1.running_mean, model.bn1.running_mean, atol=1e-3)
