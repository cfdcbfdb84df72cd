"""Models whose input is not 28×28 (32×32, 3 classes; 20×24, 4 classes) served beside a
built-in: the drawing is fitted to each model's H×W, pixels must be H×W."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from cnnscope.analysis.activations import record
from cnnscope.cli._common import ModelChoice
from cnnscope.models import load_foreign
from cnnscope.preprocess import prepare
from cnnscope.server.app import create_app, served_models
from cnnscope.server.encoding import decode

FILE = Path(__file__).parents[2] / "models" / "other_sizes.py"
SIZES = {"Wide32": (32, 32, 3), "Tall20x24": (20, 24, 4)}


@pytest.fixture(scope="module")
def sized(tmp_path_factory: pytest.TempPathFactory, mnist) -> TestClient:
    folder = tmp_path_factory.mktemp("sizes")
    choices = []
    for name in SIZES:
        torch.manual_seed(0)
        torch.save(load_foreign(f"{FILE}:{name}").net.state_dict(), folder / f"{name}.pt")
        choices.append(ModelChoice(f"{FILE}:{name}", str(folder / f"{name}.pt")))
    app = create_app(
        served_models([*choices, ModelChoice("lenet5")]), data=mnist, allowed_hosts=["testserver"]
    )
    return TestClient(app, raise_server_exceptions=False)


def _seven() -> tuple[str, np.ndarray]:
    """A 7 drawn large on a 200×200 canvas: the PNG (base64) and its grey values."""
    im = Image.new("L", (200, 200), 0)
    ImageDraw.Draw(im).line([(50, 40), (150, 40), (90, 170)], fill=255, width=14)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode(), np.asarray(im, np.float32) / 255


def _model(client: TestClient, name: str):
    return client.app.state.cnnscope.by_id[name].model


def test_models_carry_the_input_shape(sized) -> None:
    models = {m["id"]: m for m in sized.get("/api/models").json()}
    assert models["Wide32"]["input_shape"] == [1, 32, 32]
    assert models["Tall20x24"]["input_shape"] == [1, 20, 24]
    assert models["lenet5"]["input_shape"] == [1, 28, 28]
    assert len(models["Wide32"]["classes"]) == 3 and len(models["Tall20x24"]["classes"]) == 4


@pytest.mark.parametrize("name", list(SIZES))
def test_png_is_fitted_to_the_models_size(sized, name) -> None:
    h, w, k = SIZES[name]
    png, grey = _seven()
    res = sized.post("/api/predict", json={"png": png, "model": name})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["input"]["shape"] == [h, w] and len(body["probabilities"]) == k
    assert body["stages"]["conv1"]["shape"] == [4, h, w]
    derived = {d["name"]: d["shape"] for d in body["derived"]}
    assert derived["pool1"] == [4, h // 2, w // 2] and derived["pool2"] == [6, h // 4, w // 4]
    seen = decode(body["input"])  # the same image prepare() makes, to quantisation
    np.testing.assert_allclose(seen, prepare(grey, (h, w)).image, atol=1 / 255 + 1e-6)
    # The logits are the model's own on that image.
    want = record(_model(sized, name), torch.from_numpy(seen)[None, None])["fc"][0]
    np.testing.assert_allclose(body["logits"], want.numpy(), atol=1e-3)


@pytest.mark.parametrize("name", list(SIZES))
def test_pixels_of_the_models_size(sized, name) -> None:
    h, w, _ = SIZES[name]
    rng = np.random.default_rng(0)
    x = rng.random((h, w)).astype(np.float32) * 0.1  # dark: read as white ink on black
    x[h // 4 : 3 * h // 4, w // 2 - 1 : w // 2 + 1] = 1.0  # a 1
    res = sized.post("/api/predict", json={"pixels": x.ravel().tolist(), "model": name})
    assert res.status_code == 200, res.text
    want = record(_model(sized, name), torch.from_numpy(x)[None, None])["fc"][0]
    np.testing.assert_allclose(res.json()["logits"], want.numpy(), atol=1e-4)
    ex = sized.post(
        "/api/explain", json={"pixels": x.ravel().tolist(), "model": name, "method": "saliency"}
    )
    assert ex.status_code == 200 and ex.json()["attribution"]["map"]["shape"] == [h, w]
    corner = {"pixels": x.ravel().tolist(), "model": name, "stage": "conv1", "y": h - 1, "x": w - 1}
    a = sized.post("/api/arithmetic", json=corner)
    assert a.status_code == 200 and a.json()["input_shape"] == [1, h, w]


@pytest.mark.parametrize(
    ("model", "count", "want"),
    [
        ("Wide32", 784, "takes 32×32 images: give 1024 values"),
        ("Tall20x24", 784, "takes 20×24 images: give 480 values"),
        ("Tall20x24", 24 * 20 + 1, "got 481 values"),
        ("lenet5", 1024, "takes 28×28 images: give 784 values"),
    ],
)
def test_wrong_pixel_count_is_422_naming_the_field(sized, model, count, want) -> None:
    r = sized.post("/api/predict", json={"pixels": [0.0] * count, "model": model})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("pixels: ") and want in detail


def test_the_2017_protocol_is_for_28x28_models_only(sized) -> None:
    r = sized.post("/predict", json=[0.0] * 784)  # the default model is Wide32
    assert r.status_code == 400 and "Wide32 takes 32×32" in r.json()["detail"]


def test_evaluation_of_a_model_unlike_its_test_set_is_422(sized) -> None:
    r = sized.get("/api/evaluation/Wide32")  # MNIST's test set is 28×28
    assert r.status_code == 422 and "Wide32 takes 32×32 images" in r.json()["detail"]
    assert r.json()["detail"].startswith("model: ")
