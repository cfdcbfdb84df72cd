from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
from PIL import Image

from cnnscope.analysis.activations import record
from cnnscope.data import to_float
from cnnscope.server.encoding import decode
from tests.server.helpers import png


def test_predict_pixels_matches_model(client, shipped, mnist) -> None:
    model, _ = shipped
    x = mnist.test_images[0]
    body = {"pixels": (x.flatten().float() / 255).tolist()}
    res = client.post("/api/predict", json=body).json()
    assert res["predicted"] == int(mnist.test_labels[0])
    outputs = record(model, to_float(x[None]))
    assert np.allclose(res["logits"], outputs["logits"][0].numpy(), atol=1e-4)
    assert math.isclose(sum(res["probabilities"]), 1.0, abs_tol=1e-4)
    # Sent: conv1, conv2, fc1; derived: relu/pool. Quantisation error ≤ half a step.
    assert set(res["stages"]) == {"conv1", "conv2", "fc1"}
    assert [(d["name"], d["source"], d["op"]) for d in res["derived"]] == [
        ("relu1", "conv1", "relu"),
        ("pool1", "relu1", "maxpool2"),
        ("relu2", "conv2", "relu"),
        ("pool2", "relu2", "maxpool2"),
    ]
    for name in ("conv1", "conv2", "fc1"):
        got, want = decode(res["stages"][name]), outputs[name][0].numpy()
        span = (
            np.ptp(want.reshape(want.shape[0], -1), axis=1).max()
            if want.ndim == 3
            else np.ptp(want)
        )
        assert np.abs(got - want).max() <= span / 255 * 0.5 + 1e-5, name
    assert res["order"] == list(model.stage_names)


def test_predict_png_is_preprocessed(client, mnist) -> None:
    digit = mnist.test_images[1].numpy() / 255.0  # a 2
    big = np.asarray(Image.fromarray(digit.astype(np.float32), mode="F").resize((180, 180)))
    canvas = np.zeros((280, 280), np.float32)
    canvas[90:270, 10:190] = np.clip(big, 0, 1)
    res = client.post("/api/predict", json={"png": png(canvas)}).json()
    assert res["predicted"] == int(mnist.test_labels[1])
    seen = decode(res["input"])
    assert seen.shape == (28,) * 2 or seen.shape == (28, 28)


def test_response_is_compact(client, mnist) -> None:
    body = {"pixels": (mnist.test_images[3].flatten().float() / 255).tolist()}
    r = client.post("/api/predict", json=body, headers={"Accept-Encoding": "identity"})
    assert len(r.content) <= 70_000


def test_other_model_and_no_stages(client, mnist) -> None:
    body = {"pixels": [0.0] * 784, "model": "tiny", "stages": "none"}
    res = client.post("/api/predict", json=body).json()
    assert res["model"] == "tiny" and res["stages"] == {} and len(res["probabilities"]) == 10


BAD_REQUESTS = [
    ("short pixels", {"pixels": [0.0] * 783}),
    ("long pixels", {"pixels": [0.0] * 785}),
    ("strings", {"pixels": ["a"] * 784}),
    ("out of range", {"pixels": [2.0] * 784}),
    ("both inputs", {"pixels": [0.0] * 784, "png": "AAAA"}),
    ("neither input", {}),
    ("unknown field", {"pixels": [0.0] * 784, "colour": 1}),
    ("not base64", {"png": "!!!not base64!!!"}),
    ("not an image", {"png": base64.b64encode(b"hello world").decode()}),
    ("unknown model", {"pixels": [0.0] * 784, "model": "nope"}),
    ("bad stages", {"pixels": [0.0] * 784, "stages": "some"}),
]


@pytest.mark.parametrize(("why", "body"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_4xx_with_message(client, why, body) -> None:
    r = client.post("/api/predict", json=body)
    assert 400 <= r.status_code < 500, (why, r.status_code, r.text)
    assert r.json()["detail"]


def test_decompression_bomb_rejected(client) -> None:
    buf = io.BytesIO()
    Image.new("L", (20_000, 20_000)).save(buf, format="PNG")  # ~20 kB, 400 M pixels
    r = client.post("/api/predict", json={"png": base64.b64encode(buf.getvalue()).decode()})
    assert r.status_code == 400 and "exceeds the limit" in r.json()["detail"]


def test_jpeg_rejected(client) -> None:
    buf = io.BytesIO()
    Image.new("L", (28, 28)).save(buf, format="JPEG")
    r = client.post("/api/predict", json={"png": base64.b64encode(buf.getvalue()).decode()})
    assert r.status_code == 400 and "PNG" in r.json()["detail"]


def test_predict_with_live_attribution(client, mnist) -> None:
    body = {"pixels": (mnist.test_images[0].flatten().float() / 255).tolist(), "explain": "gradcam"}
    res = client.post("/api/predict", json=body).json()
    a = res["attribution"]
    assert a["method"] == "gradcam" and a["target"] == res["predicted"]
    assert a["map"]["shape"] == [28, 28] and a["details"]["layer"] == "relu2"
    res = client.post("/api/predict", json={**body, "explain": "saliency", "target": 3}).json()
    assert res["attribution"]["target"] == 3
    # slow methods are not offered live
    assert client.post("/api/predict", json={**body, "explain": "ig"}).status_code == 422


def test_explain_endpoint(client, mnist) -> None:
    body = {"pixels": (mnist.test_images[0].flatten().float() / 255).tolist()}
    res = client.post("/api/explain", json={**body, "method": "ig", "target": 7}).json()
    a = res["attribution"]
    assert a["method"] == "ig" and a["details"]["baseline"].startswith("black image")
    assert np.abs(decode(a["map"])).max() > 0
    res = client.post("/api/explain", json={**body, "method": "occlusion"}).json()
    assert res["attribution"]["details"]["window"] == 4
    for bad, code in (
        ({"method": "lime"}, 422),
        ({"method": "ig", "target": 10}, 422),
        ({"method": "gradcam", "layer": "fc1"}, 400),
        ({"method": "gradcam", "layer": "nope"}, 400),
    ):
        r = client.post("/api/explain", json={**body, **bad})
        assert r.status_code == code, (bad, r.text)
        assert r.json()["detail"]
