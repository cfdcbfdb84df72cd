"""Your own model served beside a built-in: every route answers with its model id."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from cnnscope.analysis.activations import record
from cnnscope.cli._common import ModelChoice
from cnnscope.data import to_float
from cnnscope.models import load_foreign
from cnnscope.server.app import create_app, served_models

SPEC = f"{Path(__file__).parents[2] / 'models' / 'unlike_ours.py'}:UnlikeOurs"


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory, mnist) -> TestClient:
    folder = tmp_path_factory.mktemp("own")
    torch.manual_seed(0)
    torch.save(load_foreign(SPEC).net.state_dict(), folder / "w.pt")
    models = served_models(
        [
            ModelChoice(SPEC, str(folder / "w.pt"), (0.1307, 0.3081)),
            ModelChoice("lenet5"),
        ]
    )
    app = create_app(models, data=mnist, allowed_hosts=["testserver"])
    return TestClient(app, raise_server_exceptions=False)


def test_models_lists_it_first_with_its_stages(own) -> None:
    assert own.get("/api/health").json()["default_model"] == "UnlikeOurs"
    models = own.get("/api/models").json()
    assert [m["id"] for m in models] == ["UnlikeOurs", "lenet5"]
    stages = {s["name"]: s for s in models[0]["stages"]}
    assert stages["head.fc"]["kind"] == "logits" and stages["features.7"]["shape"] == [16, 4, 4]
    assert "UnlikeOurs" in models[0]["description"]


def test_predict_matches_the_model(own, mnist) -> None:
    x = mnist.test_images[0]
    res = own.post("/api/predict", json={"pixels": (x.flatten().float() / 255).tolist()}).json()
    model = load_foreign(SPEC, normalize=(0.1307, 0.3081))
    model.net.load_state_dict(torch.load(own.app.state.cnnscope.models[0].source))
    want = record(model, to_float(x[None]))["head.fc"][0].numpy()
    np.testing.assert_allclose(res["logits"], want, atol=1e-4)
    assert "features.0" in res["stages"] and "head.fc" not in res["stages"]  # logits on top
    other = own.post("/api/predict", json={"pixels": [0.0] * 784, "model": "lenet5"}).json()
    assert len(other["logits"]) == 10 and "conv1" in other["stages"]


def test_explain_arithmetic_evaluation_features(own, mnist) -> None:
    pixels = (mnist.test_images[1].flatten().float() / 255).tolist()
    body = {"pixels": pixels, "model": "UnlikeOurs"}
    cam = own.post("/api/explain", json={**body, "method": "gradcam", "target": 2}).json()
    assert cam["attribution"]["target"] == 2
    assert cam["attribution"]["details"]["layer"] == "features.6.1"  # the last conv's ReLU
    a = own.post("/api/arithmetic", json={**body, "stage": "head.fc", "channel": 3})
    assert a.status_code == 200 and a.json()["softmax"] is not None
    conv = own.post("/api/arithmetic", json={**body, "stage": "features.4.conv", "x": 3, "y": 4})
    # the residual block's conv takes the pool's output: named, and its sum is exact
    assert conv.status_code == 200 and conv.json()["input_stage"] == "features.3"
    ev = own.get("/api/evaluation/UnlikeOurs").json()
    assert len(ev["confusion"]) == 10 and 0 <= ev["accuracy"] <= 1
    top = own.get("/api/top-examples/UnlikeOurs/head.fc1/0?k=3")
    assert top.status_code == 200 and len(top.json()) == 3
    bad = own.get("/api/top-examples/UnlikeOurs/conv1/0")
    assert bad.status_code == 404 and "features.0" in bad.json()["detail"]
    for _ in range(600):  # the render runs in the background: wait on its status
        job = own.get("/api/features/UnlikeOurs/features.0?method=plain").json()
        if job["status"] != "running":
            break
        time.sleep(0.2)
    assert job["status"] == "ready" and job["total"] == 8 and job["images"], job


def test_embedding_of_a_model_without_snapshots_is_a_404(own) -> None:
    r = own.get("/api/embedding/UnlikeOurs")
    assert r.status_code == 404
