from __future__ import annotations

import base64
import io
import json
import math
import re

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import cnnscope
from cnnscope.analysis.activations import record
from cnnscope.data import to_float
from cnnscope.models import build_model
from cnnscope.server.app import MAX_BODY_BYTES, ServedModel, create_app


@pytest.fixture(scope="module")
def shipped():
    return cnnscope.load_model("deep_mnist")


@pytest.fixture(scope="module")
def client(shipped, mnist) -> TestClient:
    model, meta = shipped
    other = build_model("lenet5").eval()
    app = create_app(
        [ServedModel("deep_mnist", model, meta, "shipped"), ServedModel("tiny", other, {}, "test")],
        data=mnist,
    )
    return TestClient(app, raise_server_exceptions=False)


def _decode(enc: dict) -> np.ndarray:
    q = np.frombuffer(base64.b64decode(enc["data"]), np.uint8).astype(np.float32)
    maps = q.reshape(len(enc["min"]), -1)
    lo, hi = np.array(enc["min"])[:, None], np.array(enc["max"])[:, None]
    return (lo + maps / 255.0 * (hi - lo)).reshape(enc["shape"])


def _png(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray((image * 255).astype(np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_health_and_models(client) -> None:
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["default_model"] == "deep_mnist"
    models = client.get("/api/models").json()
    assert [m["id"] for m in models] == ["deep_mnist", "tiny"]
    info = client.get("/api/models/deep_mnist").json()
    assert info["parameters"] == 3_274_634 and info["metrics"]["test_accuracy"] >= 0.992
    assert [s["name"] for s in info["stages"]][:3] == ["conv1", "relu1", "pool1"]
    r = client.get("/api/models/nope")
    assert r.status_code == 404 and "deep_mnist, tiny" in r.json()["detail"]


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
        got, want = _decode(res["stages"][name]), outputs[name][0].numpy()
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
    res = client.post("/api/predict", json={"png": _png(canvas)}).json()
    assert res["predicted"] == int(mnist.test_labels[1])
    seen = _decode(res["input"])
    assert seen.shape == (28,) * 2 or seen.shape == (28, 28)


def test_response_is_compact(client, mnist) -> None:
    body = {"pixels": (mnist.test_images[3].flatten().float() / 255).tolist()}
    r = client.post("/api/predict", json=body, headers={"Accept-Encoding": "identity"})
    assert len(r.content) <= 70_000


def test_other_model_and_no_stages(client, mnist) -> None:
    body = {"pixels": [0.0] * 784, "model": "tiny", "stages": "none"}
    res = client.post("/api/predict", json=body).json()
    assert res["model"] == "tiny" and res["stages"] == {} and len(res["probabilities"]) == 10


def test_filters(client, shipped) -> None:
    f = client.get("/api/models/deep_mnist/filters/conv2").json()
    assert f["shape"] == [64, 32, 5, 5]
    q = np.frombuffer(base64.b64decode(f["data"]), np.uint8).reshape(f["shape"])
    w = shipped[0].conv2.weight.detach().numpy()
    assert np.abs((q - 127.5) / 127.5 * f["scale"] - w).max() <= f["scale"] / 127.5
    assert client.get("/api/models/deep_mnist/filters/fc1").status_code == 404


def test_test_digits(client, mnist) -> None:
    d = client.get("/api/test-digits/7").json()
    assert d["label"] == int(mnist.test_labels[7])
    assert base64.b64decode(d["pixels"]) == mnist.test_images[7].numpy().tobytes()
    assert client.get("/api/test-digits/random").status_code == 200
    assert client.get("/api/test-digits/10000").status_code == 404


def test_compat_endpoint_like_2017_demo(client, shipped, mnist) -> None:
    model, _ = shipped
    x = mnist.test_images[0]
    res = client.post("/predict", json=x.flatten().tolist()).json()
    assert set(res) == {"h_conv1", "h_pool1", "h_conv2", "h_pool2", "y_conv"}
    conv1 = np.array(res["h_conv1"])
    assert conv1.shape == (32, 28, 28) and conv1.min() == 0 and conv1.max() == 255
    assert conv1.dtype.kind == "i"  # whole gray levels, as the old page paints them
    assert np.array(res["h_pool2"]).shape == (64, 7, 7)
    want = model(to_float(x[None]))[0].detach().numpy()
    assert np.allclose(res["y_conv"], want, atol=1e-4)


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


def test_nan_and_inf_rejected(client) -> None:
    for token in ("NaN", "Infinity", "-Infinity"):
        text = '{"pixels": [' + ", ".join([token] + ["0"] * 783) + "]}"
        r = client.post("/api/predict", content=text, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, token


def test_malformed_json_and_wrong_content_type(client) -> None:
    r = client.post("/api/predict", content="{", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = client.post("/api/predict", content="pixels=1", headers={"Content-Type": "text/plain"})
    assert 400 <= r.status_code < 500


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


def test_body_over_limit_413(client) -> None:
    big = json.dumps({"png": "A" * (MAX_BODY_BYTES + 10)})
    r = client.post("/api/predict", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    # and the server keeps serving
    assert client.get("/api/health").status_code == 200


def test_compat_rejects_bad_input(client) -> None:
    assert client.post("/predict", json=[0] * 10).status_code == 422
    assert client.post("/predict", json=[300] * 784).status_code == 422


def test_static_page_served_offline(client) -> None:
    html = client.get("/").text
    assert '<script type="module" src="app.js">' in html
    for asset in (
        "app.js",
        "api.js",
        "embed.js",
        "eval.js",
        "features.js",
        "pad.js",
        "render.js",
        "style.css",
    ):
        r = client.get(f"/{asset}")
        assert r.status_code == 200, asset
        assert "http://" not in r.text and "https://" not in r.text, asset  # no CDN


def test_openapi_docs_work_offline(client) -> None:
    html = client.get("/docs").text
    assert "swagger-ui-bundle.js" in html
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
    assert urls and not [u for u in urls if u.startswith(("http://", "https://", "//"))], urls
    for u in urls:
        assert client.get(u).status_code == 200, u
    schema = client.get("/openapi.json").json()
    assert "/api/predict" in schema["paths"] and "PredictRequest" in schema["components"]["schemas"]


def test_concurrent_requests_do_not_mix(shipped, mnist) -> None:
    """Hooks are shared per model; concurrent requests must each get their own maps."""
    from concurrent.futures import ThreadPoolExecutor

    model, meta = shipped
    client = TestClient(create_app([ServedModel("m", model, meta, "shipped")], data=mnist))
    bodies = [
        {"pixels": (mnist.test_images[i].flatten().float() / 255).tolist()} for i in range(16)
    ]

    def call(i: int) -> tuple[int, dict]:
        return i, client.post("/api/predict", json=bodies[i]).json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(16)))
    for i, res in results:
        want = record(model, to_float(mnist.test_images[i][None]), ["fc1"])["fc1"][0].numpy()
        assert np.abs(_decode(res["stages"]["fc1"]) - want).max() < np.ptp(want) / 255 + 1e-5
        assert res["predicted"] == int(torch.tensor(res["logits"]).argmax())


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
    assert np.abs(_decode(a["map"])).max() > 0
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


def test_evaluation_and_cells(client, mnist) -> None:
    ev = client.get("/api/evaluation/deep_mnist").json()
    assert ev["accuracy"] >= 0.992 and ev["count"] == 10_000
    assert sum(map(sum, ev["confusion"])) == 10_000
    assert ev["untrained_accuracy"] < 0.3
    assert ev["errors"] == 10_000 - sum(ev["confusion"][k][k] for k in range(10))
    true, pred = max(
        ((t, p) for t in range(10) for p in range(10) if t != p),
        key=lambda c: ev["confusion"][c[0]][c[1]],
    )
    cell = client.get(f"/api/evaluation/deep_mnist/cell?true={true}&pred={pred}").json()
    assert cell["count"] == ev["confusion"][true][pred] == len(cell["digits"])
    confidences = [d["probabilities"][pred] for d in cell["digits"]]
    assert confidences == sorted(confidences)
    for d in cell["digits"]:
        assert d["label"] == true and d["pred"] == pred == int(np.argmax(d["probabilities"]))
        assert base64.b64decode(d["pixels"]) == mnist.test_images[d["index"]].numpy().tobytes()
    diag = client.get("/api/evaluation/deep_mnist/cell?true=1&pred=1&limit=5").json()
    assert diag["count"] > 1000 and len(diag["digits"]) == 5
    assert client.get("/api/evaluation/deep_mnist/cell?true=10&pred=1").status_code == 422
    assert client.get("/api/evaluation/nope").status_code == 404


def test_slow_work_does_not_block_predict(shipped, mnist) -> None:
    """An evaluation (seconds) running in a worker thread leaves /api/predict responsive."""
    import threading
    import time

    model, meta = shipped
    app = create_app([ServedModel("m", model, meta, "shipped")], data=mnist)
    with TestClient(app) as c:
        body = {"pixels": (mnist.test_images[0].flatten().float() / 255).tolist()}
        worker = threading.Thread(target=lambda: c.get("/api/evaluation/m"))
        worker.start()
        time.sleep(0.3)
        t0 = time.perf_counter()
        for _ in range(5):
            assert c.post("/api/predict", json=body).status_code == 200
        during = time.perf_counter() - t0
        overlapped = worker.is_alive()  # the evaluation was still running meanwhile
        worker.join()
    assert overlapped
    assert during < 2.0  # five predictions, not one evaluation (~5 s) long


def test_embedding_shipped_and_missing(client) -> None:
    emb = client.get("/api/embedding/deep_mnist").json()
    assert emb["method"] == "tsne" and emb["aligned"] and len(emb["indices"]) == 2000
    frames = emb["frames"]
    assert frames[0]["step"] == 0 and len(frames) >= 8
    assert all(len(f["coords"]) == 2000 and len(f["predictions"]) == 2000 for f in frames)
    assert frames[-1]["knn_2d"] > 0.95 and frames[0]["subset_accuracy"] < 0.3
    assert np.asarray(emb["classes"]["weights"]).shape == (10, 2)
    r = client.get("/api/embedding/tiny")
    assert r.status_code == 404 and "cnnscope train --model lenet5" in r.json()["detail"]


def test_features_job_runs_in_background_then_is_cached(
    shipped, mnist, tmp_path, monkeypatch
) -> None:
    import time

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model, meta = shipped
    c = TestClient(create_app([ServedModel("m", model, meta, "test")], data=mnist))
    first = c.get("/api/features/m/conv1").json()
    assert first["status"] in ("running", "ready") and first["total"] == 32
    deadline = time.monotonic() + 60
    while (job := c.get("/api/features/m/conv1").json())["status"] == "running":
        assert c.post("/api/predict", json={"pixels": [0.0] * 784}).status_code == 200
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["status"] == "ready" and job["done"] == 32
    assert len(base64.b64decode(job["images"])) == 32 * 784
    # A new app (a restart) finds the images in the disk cache at once.
    c2 = TestClient(create_app([ServedModel("m", model, meta, "test")], data=mnist))
    assert c2.get("/api/features/m/conv1").json()["status"] == "ready"
    r = c.get("/api/features/m/conv7")
    assert r.status_code == 404 and "valid: conv1" in r.json()["detail"]
    assert c.get("/api/features/m/conv1?method=magic").status_code == 422


def test_top_examples_endpoint(client, mnist) -> None:
    top = client.get("/api/top-examples/deep_mnist/conv2/5?k=4").json()
    assert len(top) == 4 and top[0]["score"] >= top[-1]["score"] > 0
    assert all(0 <= v <= 28 for v in top[0]["field"])
    assert (
        base64.b64decode(top[0]["pixels"]) == mnist.test_images[top[0]["index"]].numpy().tobytes()
    )
    assert client.get("/api/top-examples/deep_mnist/fc1/2000").status_code == 404
    assert client.get("/api/top-examples/deep_mnist/conv2/5?k=100").status_code == 422
