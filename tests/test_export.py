"""cnnscope export: ONNX checked against ONNX Runtime, TorchScript against PyTorch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnscope.cli import main
from cnnscope.export import check_onnx, export_model
from cnnscope.models import build_model, load_foreign

SPEC = f"{Path(__file__).parent / 'models' / 'unlike_ours.py'}:UnlikeOurs"


def test_onnx_matches_pytorch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    pytest.importorskip("onnxscript", reason="the [onnx] extra is not installed")
    torch.manual_seed(0)
    model = load_foreign(SPEC, normalize=(0.1307, 0.3081))  # normalization inside the graph
    path = export_model(model, "onnx", tmp_path / "own.onnx")
    x = torch.rand(5, 1, 28, 28)  # another batch size than the export's: dynamic
    got = ort.InferenceSession(str(path)).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=0)
    assert check_onnx(model, path) < 1e-4


def test_onnx_is_one_file(tmp_path: Path) -> None:
    # torch 2.9+ wrote the weights beside the .onnx (own.onnx.data) unless told; a copy of
    # the .onnx alone then failed to load in ONNX Runtime.
    ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    pytest.importorskip("onnxscript", reason="the [onnx] extra is not installed")
    path = export_model(build_model("deep_mnist"), "onnx", tmp_path / "out" / "m.onnx")
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.onnx"]
    moved = tmp_path / "moved.onnx"
    path.rename(moved)
    session = ort.InferenceSession(str(moved))
    assert session.run(None, {"image": np.zeros((2, 1, 28, 28), np.float32)})[0].shape == (2, 10)


def test_torchscript_matches_pytorch(tmp_path: Path) -> None:
    model = build_model("lenet5").eval()
    path = export_model(model, "torchscript", tmp_path / "lenet5.pt")
    with warnings.catch_warnings():  # torch.jit is deprecated in recent torch; still works
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path))
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.filterwarnings("default::RuntimeWarning")  # fresh weights: warned, still exported
def test_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "own.pt"
    assert main(["export", "--model", SPEC, "--format", "torchscript", "--out", str(out)]) == 0
    assert out.is_file() and "10 logits out" in capsys.readouterr().out
