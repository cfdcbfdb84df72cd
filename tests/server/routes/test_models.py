from __future__ import annotations

import base64

import numpy as np


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


def test_filters(client, shipped) -> None:
    f = client.get("/api/models/deep_mnist/filters/conv2").json()
    assert f["shape"] == [64, 32, 5, 5]
    q = np.frombuffer(base64.b64decode(f["data"]), np.uint8).reshape(f["shape"])
    w = shipped[0].conv2.weight.detach().numpy()
    assert np.abs((q - 127.5) / 127.5 * f["scale"] - w).max() <= f["scale"] / 127.5
    assert client.get("/api/models/deep_mnist/filters/fc1").status_code == 404
