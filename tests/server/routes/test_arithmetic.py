from __future__ import annotations

import numpy as np
import pytest

from cnnscope.analysis.activations import record
from cnnscope.data import to_float


def _pixels(mnist, i: int = 0) -> list[float]:
    return (mnist.test_images[i].flatten().float() / 255).tolist()


def test_conv_value_is_the_models(client, shipped, mnist) -> None:
    model, _ = shipped
    body = {"pixels": _pixels(mnist), "stage": "conv1", "channel": 5, "y": 12, "x": 14}
    res = client.post("/api/arithmetic", json=body)
    assert res.status_code == 200, res.text
    a = res.json()
    want = record(model, to_float(mnist.test_images[0][None]))
    assert a["value"] == pytest.approx(float(want["conv1"][0, 5, 12, 14]), abs=1e-6)
    assert abs(a["sum"] + a["bias"] - a["value"]) < 1e-5
    assert a["kind"] == "conv" and a["input_stage"] == "input" and a["kernel"] == [5, 5]
    assert np.array(a["patches"][0]["input"]).shape == (5, 5)
    assert a["activation"]["stage"] == "relu1" and a["pool"]["stage"] == "pool1"
    assert a["model"] == "deep_mnist"


def test_logits_softmax_and_png_input(client, mnist) -> None:
    body = {"pixels": _pixels(mnist, 1), "stage": "logits", "channel": 2}
    a = client.post("/api/arithmetic", json=body).json()
    assert a["kind"] == "logits" and len(a["softmax"]["probabilities"]) == 10
    assert int(np.argmax(a["softmax"]["probabilities"])) == int(mnist.test_labels[1])


def test_other_model(client, mnist) -> None:
    body = {"pixels": _pixels(mnist), "stage": "conv2", "channel": 15, "y": 9, "model": "tiny"}
    a = client.post("/api/arithmetic", json=body).json()
    assert a["model"] == "tiny" and len(a["partials"]) == 6


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"stage": "pool1"}, "stage: 'pool1' has no arithmetic in deep_mnist; valid: conv1, conv2"),
        ({"stage": "conv9"}, "stage: 'conv9'"),
        ({"channel": 32}, "channel: 32 is outside conv1's 32"),
        ({"y": 28}, "y: 28 is outside"),
        ({"x": 40}, "x: 40 is outside"),
        ({"stage": "fc1", "channel": 1024}, "channel: 1024"),
        ({"stage": "fc1", "y": 1}, "y: 1 is outside fc1's 1"),
    ],
)
def test_invalid_place_is_422_naming_the_field(client, mnist, change, field) -> None:
    body = {"pixels": _pixels(mnist), "stage": "conv1", **change}
    res = client.post("/api/arithmetic", json=body)
    assert res.status_code == 422
    assert res.json()["detail"].startswith(field)


def test_negative_and_missing_fields_are_422(client, mnist) -> None:
    res = client.post("/api/arithmetic", json={"pixels": _pixels(mnist), "stage": "conv1", "x": -1})
    assert res.status_code == 422 and "x" in res.json()["detail"]
    res = client.post("/api/arithmetic", json={"pixels": _pixels(mnist)})
    assert res.status_code == 422 and "stage" in res.json()["detail"]


def test_a_layer_it_cannot_spell_out_is_422(mnist) -> None:
    """A grouped-free but unsupported layer (here a circular-padded conv) is named, not a 500."""
    from fastapi.testclient import TestClient

    from cnnscope.models import build_model
    from cnnscope.server.app import ServedModel, create_app

    model = build_model("lenet5").eval()
    model.conv1.padding_mode = "circular"
    app = create_app(
        [ServedModel("odd", model, {}, "test")], data=mnist, allowed_hosts=["testserver"]
    )
    res = TestClient(app).post("/api/arithmetic", json={"pixels": _pixels(mnist), "stage": "conv1"})
    assert res.status_code == 422 and res.json()["detail"].startswith("stage: conv1 is a Conv2d")


def test_batchnorm_step_of_the_best_model(mnist) -> None:
    from fastapi.testclient import TestClient

    import cnnscope
    from cnnscope.server.app import ServedModel, create_app

    model, meta = cnnscope.load_model("best")
    served = [ServedModel("best", model, meta, "shipped")]
    app = create_app(served, data=mnist, allowed_hosts=["testserver"])
    client = TestClient(app)
    body = {"pixels": _pixels(mnist), "stage": "conv2", "channel": 7, "y": 6, "x": 7}
    a = client.post("/api/arithmetic", json=body).json()
    rec = record(model, to_float(mnist.test_images[0][None]))
    n = a["norm"]
    assert (n["stage"], n["module"]) == ("bn2", "BatchNorm2d")
    assert n["value"] == pytest.approx(float(rec["bn2"][0, 7, 6, 7]), abs=1e-6)
    assert a["value"] * n["scale"] + n["shift"] == pytest.approx(n["value"], abs=1e-5)
    assert a["activation"]["value"] == pytest.approx(max(0.0, n["value"]), abs=1e-6)
    assert client.post("/api/arithmetic", json={**body, "stage": "conv1"}).json()["norm"]


def test_no_norm_without_normalisation(client, mnist) -> None:
    body = {"pixels": _pixels(mnist), "stage": "conv2", "channel": 7, "y": 6, "x": 7}
    assert client.post("/api/arithmetic", json=body).json()["norm"] is None  # deep_mnist
