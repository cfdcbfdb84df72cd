from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from cnnscope.server.app import ServedModel, create_app


def test_features_job_runs_in_background_then_is_cached(
    shipped, mnist, tmp_path, monkeypatch
) -> None:
    import time

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model, meta = shipped
    c = TestClient(
        create_app(
            [ServedModel("m", model, meta, "test")], data=mnist, allowed_hosts=["testserver"]
        )
    )
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
    c2 = TestClient(
        create_app(
            [ServedModel("m", model, meta, "test")], data=mnist, allowed_hosts=["testserver"]
        )
    )
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


def test_top_examples_bad_stage_or_unit_is_4xx(client) -> None:
    """Issue 12 #6: an unknown stage and `prob` were 500s."""
    for path, words in (
        ("/api/top-examples/deep_mnist/nope/0", "valid: conv1"),
        ("/api/top-examples/deep_mnist/prob/3", "valid: conv1"),
        ("/api/top-examples/deep_mnist/fc1/2000", "units 0–1023"),
        ("/api/top-examples/deep_mnist/conv2/-1", "units 0–63"),
    ):
        r = client.get(path)
        assert r.status_code == 404, (path, r.text)
        assert words in r.json()["detail"], (path, r.text)
