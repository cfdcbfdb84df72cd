"""Every path that takes ``--device`` (or ``device=``), run on an accelerator.

The device is ``$CNNSCOPE_TEST_DEVICE`` (default ``cuda``; ``mps`` on a Mac); the module
is skipped where the machine lacks it (CI has no GPU). ``CNNSCOPE_TEST_DEVICE=cpu`` runs
it here as a dry run of the tests themselves. Each test compares with the CPU where the
two must agree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.analysis.features import layer_images, with_overrides
from cnnscope.analysis.features.methods import config_for
from cnnscope.checkpoints import load_weights
from cnnscope.cli import main
from cnnscope.devices import available_devices, native_bf16
from cnnscope.export import check_onnx
from cnnscope.models import build_model
from cnnscope.train import TrainConfig, fit
from tests.support.training import InterruptAt, small_config

NAME = os.environ.get("CNNSCOPE_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(NAME not in available_devices(), reason=f"no {NAME} here")
DEVICE = torch.device(NAME)


def _deep(tmp_path: Path) -> TrainConfig:
    """deep_mnist, one short epoch on 3,000 digits: past 85 % on any device."""
    return small_config(tmp_path, model="deep_mnist", epochs=1, train_limit=3000, batch_size=64)


def test_trains_on_the_gpu_and_its_weights_run_on_the_cpu(tmp_path: Path, mnist) -> None:
    result = fit(_deep(tmp_path), data=mnist, device=DEVICE)
    assert result.metrics["test_accuracy"] > 0.85  # one short epoch, as on the CPU
    module, meta = load_weights(result.weights)
    expected = "bf16" if native_bf16(DEVICE) else "fp32"
    assert meta["train_config"]["precision"] == expected  # auto: native bf16 on the GPU
    x = mnist.test_images[:256].float().div(255).unsqueeze(1)
    on_cpu = module.eval()(x)
    on_gpu = module.to(DEVICE)(x.to(DEVICE)).cpu()
    assert torch.allclose(on_cpu, on_gpu, atol=1e-3)
    snapshots = json.loads((Path(result.weights).parent / "snapshots" / "index.json").read_text())
    assert [s["step"] for s in snapshots["snapshots"]][:2] == [0, 3]


@pytest.mark.parametrize(("first", "then"), [(NAME, "cpu"), ("cpu", NAME)])
def test_a_run_resumes_on_another_device(tmp_path: Path, mnist, first: str, then: str) -> None:
    # The optimizer's state (fused AdamW's step counters too) moves with the weights.
    config = small_config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        fit(config, [InterruptAt(13)], data=mnist, device=torch.device(first))
    resumed = fit(config, resume=True, data=mnist, device=torch.device(then))
    assert resumed.steps == 20
    assert all(torch.isfinite(p).all() for p in resumed.model.parameters())


def _digit() -> np.ndarray:
    image = np.zeros((28, 28), np.float32)
    image[5:23, 13:16] = 1.0  # a "1"
    return image


@pytest.mark.parametrize("name", ["deep_mnist", "best"])
def test_the_api_on_the_gpu_answers_as_on_the_cpu(name: str) -> None:
    cpu, gpu = cnnscope.load(name), cnnscope.load(name, device=NAME)
    assert gpu.device.type == NAME and cpu.device.type == "cpu"
    np.testing.assert_allclose(gpu.predict(_digit()), cpu.predict(_digit()), atol=1e-4)
    acts = gpu.stages(_digit())
    assert all(v.device.type == "cpu" for v in acts.values())
    for method in ("saliency", "gradxinput", "ig", "smoothgrad", "gradcam", "occlusion"):
        a, b = gpu.explain(_digit(), method=method), cpu.explain(_digit(), method=method)
        assert a.target == b.target == 1, method
        # smoothgrad's noise comes from each device's own generator: alike, not equal.
        agree = 0.8 if method == "smoothgrad" else 0.99
        assert np.corrcoef(a.map.ravel(), b.map.ravel())[0, 1] > agree, method
    images = gpu.features(gpu.stage_names[0], units=[0, 1], steps=20)
    assert images.shape == (2, 28, 28) and np.isfinite(images).all()
    assert gpu.device.type == NAME


def test_evaluation_on_the_gpu_equals_the_cpu_s() -> None:
    gpu = cnnscope.load("lenet5", device=NAME)
    assert gpu.evaluate().accuracy == pytest.approx(cnnscope.load("lenet5").evaluate().accuracy)


def test_export_leaves_the_model_on_the_gpu(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    pytest.importorskip("onnxscript", reason="the [onnx] extra is not installed")
    m = cnnscope.load("deep_mnist", device=NAME)
    path = m.export(tmp_path / "m.onnx")  # traced on the CPU: a portable file
    assert m.device.type == NAME  # it was moved to the CPU and left there
    assert check_onnx(m.module, path) < 1e-2  # the GPU's logits against ONNX Runtime's
    assert m.device.type == NAME


@pytest.mark.parametrize("method", ["regularized", "prior", "plain"])
def test_class_images_render_on_the_gpu(method: str) -> None:
    model = build_model("hvass").to(DEVICE)
    images = layer_images(model, "prob", [3], with_overrides(config_for(method), steps=30))
    assert images.shape[-2:] == (28, 28) and np.isfinite(images).all()
    assert images.min() >= 0 and images.max() <= 1


def test_the_cli_takes_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--model", "lenet5", "--device", NAME, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.98
    out = tmp_path / "f"
    args = ["--layer", "conv1", "--units", "0-3", "--steps", "20", "--out", str(out)]
    assert main(["features", "--model", "lenet5", "--device", NAME, *args]) == 0
    assert (out / "features-conv1-regularized.png").exists()
    run = tmp_path / "run"
    train = ["train", "--model", "hvass", "--steps", "30", "--train-limit", "500"]
    assert main([*train, "--run-dir", str(run), "--device", NAME]) == 0
    assert load_weights(run / "model.safetensors")[1]["train_config"]["steps"] == 30
