from __future__ import annotations

import base64
import time

import numpy as np
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


def test_feature_renders_run_one_at_a_time_with_a_bounded_queue(
    mnist, tmp_path, monkeypatch
) -> None:
    """Issue 12 #7: each request for a new layer started its own minute-long render."""
    import threading

    from cnnscope.models import build_model, stage_infos
    from cnnscope.server.routes import features as route
    from cnnscope.server.state import RENDER_QUEUE

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    gate, running, most = threading.Event(), [], [0]
    lock = threading.Lock()

    def fake_render(model, stage, config, progress):
        with lock:
            running.append(stage)
            most[0] = max(most[0], len(running))
        gate.wait(10)
        with lock:
            running.remove(stage)
        return np.zeros((stage_infos(model)[stage].shape[0], 28, 28), np.float32)

    monkeypatch.setattr(route, "layer_images", fake_render)
    m = ServedModel("tiny", build_model("lenet5"), {}, "test")
    c = TestClient(create_app([m], data=mnist, allowed_hosts=["testserver"]))
    stages = ["conv1", "conv2", "fc1", "fc2"][: RENDER_QUEUE + 2]
    answers = [c.get(f"/api/features/tiny/{s}") for s in stages]
    assert [r.status_code for r in answers[:-1]] == [200] * (RENDER_QUEUE + 1)
    assert answers[-1].status_code == 503 and answers[-1].headers["retry-after"] == "1"
    gate.set()
    deadline = time.monotonic() + 10
    while any(c.get(f"/api/features/tiny/{s}").json()["status"] != "ready" for s in stages[:-1]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert most[0] == 1  # never two renders of one model at once


def test_features_report_dead_units_as_unused_counts_them(shipped, mnist, tmp_path, monkeypatch):
    # The page draws these as dead instead of as grey squares; the figure agrees with
    # `cnnscope unused` (relu2: channel 23 of the shipped deep_mnist), and is cached on disk.
    from cnnscope.analysis.features import unused_channels

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model, meta = shipped
    expected = unused_channels(model, mnist.test_images, "conv2")["unused"]
    assert expected == [23]

    def app():  # type: ignore[no-untyped-def]
        served = [ServedModel("deep_mnist", model, meta, "shipped")]
        return TestClient(create_app(served, data=mnist, allowed_hosts=["testserver"]))

    job = app().get("/api/features/deep_mnist/conv2").json()
    assert job["status"] == "ready" and job["dead"] == expected
    assert list((tmp_path / "cnnscope" / "units").iterdir())
    assert app().get("/api/features/deep_mnist/logits").json()["dead"] == []


def test_features_without_test_data_or_a_writable_cache(shipped, tmp_path, monkeypatch) -> None:
    # Found in review: without MNIST on disk the Features view answered 503 (dead units
    # needed the test set) and every retry queued the same render again; an unwritable
    # cache failed a finished render.
    from cnnscope.models import build_model

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    model, meta = shipped
    tiny = build_model("lenet5").eval()
    served = [ServedModel("deep_mnist", model, meta, "shipped"), ServedModel("t", tiny, {}, "t")]
    app = create_app(served, data_dir=str(tmp_path / "empty"), allowed_hosts=["testserver"])
    with TestClient(app) as c:
        job = c.get("/api/features/deep_mnist/conv1").json()
        assert job["status"] == "ready" and job["dead"] is None
        deadline = time.monotonic() + 60
        while (job := c.get("/api/features/t/conv1").json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert job["status"] == "ready" and job["total"] == 6
        assert app.state.cnnscope.models[1].renders.pending == 0
    # Leaving the app (Ctrl-C in serve) stops its pools: renders give up at their next step.
    assert all(m.stopping.is_set() for m in app.state.cnnscope.models)


def test_health_lists_the_feature_methods_the_page_offers(client) -> None:
    from cnnscope.analysis.features import METHODS

    listed = client.get("/api/health").json()["features"]
    assert [f["id"] for f in listed] == list(METHODS)
    assert all(f["name"] and f["trade"] for f in listed)


def test_feature_check_judges_the_class_images_shown(client) -> None:
    r = client.get("/api/feature-check/deep_mnist?method=regularized")
    assert r.status_code == 200, r.text
    c = r.json()
    assert set(c["recognised"]) == {"logistic", "knn"} and len(c["percentile"]) == 10
    assert c["faithful"] == sum(p >= 0.99 for p in c["percentile"])
    assert c["sentence"].startswith(f"recognised {c['recognised']['logistic']}/10")
    assert 0 <= c["frame"] <= c["mean"] + 1 and c["model"] == "deep_mnist"
    bad = client.get("/api/feature-check/deep_mnist?method=magic")
    assert bad.status_code == 422 and "method 'magic'" in bad.json()["detail"]
    assert client.get("/api/features/deep_mnist/logits?method=magic").status_code == 422
    assert client.get("/api/feature-check/nobody").status_code == 404
