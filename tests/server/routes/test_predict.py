from __future__ import annotations

import base64
import io
import math
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnscope.analysis.activations import record
from cnnscope.data import to_float
from cnnscope.server.app import ServedModel, create_app
from cnnscope.server.encoding import decode
from cnnscope.server.middleware import MAX_BODY_BYTES
from tests.server.helpers import b64png, digit_canvas, png, png_bytes


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


def test_answer_is_gzipped_once_when_asked(client, mnist) -> None:
    """The route gzips its answer on a worker thread; the middleware must not again."""
    body = {"pixels": (mnist.test_images[3].flatten().float() / 255).tolist()}
    plain = client.post("/api/predict", json=body, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    r = client.post("/api/predict", json=body, headers={"Accept-Encoding": "gzip, br"})
    assert r.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in r.headers["vary"].lower()
    a, b = r.json(), plain.json()  # httpx undoes one gzip: twice would not parse
    a.pop("server_ms"), b.pop("server_ms")
    assert a == b
    assert int(r.headers["content-length"]) < len(plain.content) / 1.5


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
        ({"method": "gradcam", "layer": "fc1"}, 422),
        ({"method": "gradcam", "layer": "nope"}, 422),
    ):
        r = client.post("/api/explain", json={**body, **bad})
        assert r.status_code == code, (bad, r.text)
        assert r.json()["detail"]


def test_live_gradcam_uses_the_models_last_conv(mnist) -> None:
    """Issue 12 #3: with single_conv (no conv2) live Grad-CAM answered 400."""
    from cnnscope.models import build_model

    m = ServedModel("single", build_model("single_conv"), {}, "test")
    c = TestClient(create_app([m], data=mnist, allowed_hosts=["testserver"]))
    body = {"pixels": (mnist.test_images[0].flatten().float() / 255).tolist()}
    r = c.post("/api/predict", json={**body, "explain": "gradcam"})
    assert r.status_code == 200, r.text
    assert r.json()["attribution"]["details"]["layer"] == "relu1"  # conv1's activation
    r = c.post("/api/explain", json={**body, "method": "gradcam"})
    assert r.status_code == 200 and r.json()["attribution"]["details"]["layer"] == "relu1"


def test_worst_case_png_is_refused_from_its_header(client) -> None:
    """Issue 12 #4: a small PNG claiming 4096×4096 is refused before it is decoded."""
    data = png_bytes(np.zeros((4096, 4096)))
    assert len(data) < 100_000
    t0 = time.perf_counter()
    r = client.post("/api/predict", json={"png": b64png(data)})
    assert r.status_code == 400 and "exceeds the limit of 1,048,576 pixels" in r.json()["detail"]
    assert time.perf_counter() - t0 < 0.5  # decoding it took ~1.5 s


@pytest.mark.parametrize(
    "extra",
    [
        {"pnginfo": "ztxt"},  # 8 MB of text, deflated to a few kB
        {"icc_profile": b"\0" * 8_000_000},  # an 8 MB colour profile, deflated
        {"pnginfo": "text"},  # 1 MB of plain text
    ],
    ids=["zTXt", "iCCP", "tEXt"],
)
def test_large_ancillary_chunks_are_ignored(client, mnist, extra) -> None:
    """Issue 12 #6: these were 500s (Pillow's ValueError while inflating the chunk)."""
    from PIL.PngImagePlugin import PngInfo

    if extra.get("pnginfo"):
        info = PngInfo()
        size = 8_000_000 if extra["pnginfo"] == "ztxt" else 1_000_000
        info.add_text("comment", "x" * size, zip=extra["pnginfo"] == "ztxt")
        extra = {"pnginfo": info}
    digit = mnist.test_images[1].numpy() / 255.0
    data = png_bytes(digit_canvas(digit), **extra)
    assert len(data) < MAX_BODY_BYTES * 3 // 4
    r = client.post("/api/predict", json={"png": b64png(data)})
    assert r.status_code == 200, r.text
    assert r.json()["predicted"] == int(mnist.test_labels[1])


def test_explain_layer_is_validated_and_caches_stay_bounded(client, mnist) -> None:
    """Issue 12 #5: each distinct `layer` made a new cached explainer (unbounded memory)."""
    body = {"pixels": (mnist.test_images[0].flatten().float() / 255).tolist()}
    m = client.app.state.cnnscope.served("deep_mnist")
    for i in range(30):
        r = client.post("/api/explain", json={**body, "method": "saliency", "layer": f"x{i}"})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert detail.startswith("layer:") and "valid: conv1, relu1, pool1" in detail
    before = len(m._explainers)
    for layer in ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2"):
        r = client.post("/api/explain", json={**body, "method": "saliency", "layer": layer})
        assert r.status_code == 200
        r = client.post("/api/explain", json={**body, "method": "gradcam", "layer": layer})
        assert r.status_code == 200, r.text
    # saliency ignores the layer: one explainer for all six; gradcam one per layer
    assert len(m._explainers) <= min(before + 7, m._explainers.maxsize)


def test_black_on_white_is_inverted_and_said(client, mnist) -> None:
    # Sent as pixels, a black-on-white digit scored 10–14 % without a word to the user.
    hits = 0
    for i in range(20):
        x = mnist.test_images[i].flatten().float() / 255
        res = client.post("/api/predict", json={"pixels": (1 - x).tolist()}).json()
        assert res["inverted"] is True
        hits += res["predicted"] == int(mnist.test_labels[i])
    assert hits >= 19
    plain = client.post("/api/predict", json={"pixels": [0.0] * 784}).json()
    assert plain["inverted"] is False
    paper = np.ones((280, 280), np.float32)
    paper[60:220, 130:150] = 0.0  # a black 1 on white paper, through the drawing path
    res = client.post("/api/predict", json={"png": png(paper)}).json()
    assert res["inverted"] is True and res["predicted"] == 1


def test_a_blank_drawing_is_said_to_be_blank(client, mnist) -> None:
    # An empty canvas was answered "predicted 3" (p 0.11) like any digit.
    for body in (
        {"pixels": [0.0] * 784},
        {"png": png(np.zeros((280, 280), np.float32))},
        {"png": png(np.ones((280, 280), np.float32))},  # blank white paper
    ):
        assert client.post("/api/predict", json=body).json()["blank"] is True
    x = mnist.test_images[0].flatten().float() / 255
    assert client.post("/api/predict", json={"pixels": x.tolist()}).json()["blank"] is False


def test_a_prediction_takes_one_pool_hop_and_is_rendered_on_the_batch_thread(
    client, mnist, monkeypatch
) -> None:
    # Decode on a fast-pool thread, forward + render on the batcher's: the fast pool is
    # asked once per drawing (it was twice), a live attribution still renders on it.
    from cnnscope.server.routes import predict

    state = client.app.state.cnnscope
    submits, threads = [], []
    real_submit, real_respond = state.fast.submit, predict._respond

    def submit(fn, *args):
        submits.append(getattr(fn, "__name__", fn))
        return real_submit(fn, *args)

    def respond(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real_respond(*args, **kwargs)

    monkeypatch.setattr(state.fast, "submit", submit)
    monkeypatch.setattr(predict, "_respond", respond)
    body = {"png": png(digit_canvas(mnist.test_images[0].numpy() / 255.0))}
    assert client.post("/api/predict", json=body).status_code == 200
    assert len(submits) == 1 and threads == ["cnnscope-batch-deep_mnist"]
    assert client.post("/api/predict", json={**body, "explain": "saliency"}).status_code == 200
    assert threads[1].startswith("cnnscope-fast")
