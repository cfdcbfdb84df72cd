"""Acceptance of "any data" (issue 14): a 4-class .npz with classes.txt trains a built-in
architecture, evaluates (a 4×4 confusion matrix with the names) and serves."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cnnscope.checkpoints import load_weights
from cnnscope.cli import main
from cnnscope.cli._common import ModelChoice
from cnnscope.server.app import create_app
from cnnscope.server.state import served_models
from tests.support.shapes import NAMES, write_shapes


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, weights): hvass trained for 60 steps on the four shapes."""
    root = tmp_path_factory.mktemp("any-data")
    data = write_shapes(root / "shapes")
    run = root / "run"
    argv = ["train", "--model", "hvass", "--data-dir", str(data), "--run-dir", str(run)]
    argv += ["--steps", "60", "--batch-size", "32", "--snapshot-size", "80", "--json"]
    assert main(argv) == 0
    return data, run / "model.safetensors"


def test_training_records_classes_and_builds_k_outputs(trained, capsys) -> None:
    _, weights = trained
    model, meta = load_weights(weights, expect="hvass")
    assert meta["classes"] == list(NAMES) and meta["config"]["num_classes"] == 4
    assert model.logits.out_features == 4
    assert meta["data"]["format"] == "npz" and meta["data"]["source"].endswith("shapes.npz")
    assert meta["metrics"]["test_accuracy"] > 0.6  # chance is 0.25


def test_evaluate_on_the_data_it_was_trained_on(trained, capsys) -> None:
    data, weights = trained
    capsys.readouterr()
    # No --data-dir: the weights' metadata names their data set.
    assert main(["evaluate", "--weights", str(weights), "--json", "--no-cache"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["classes"] == list(NAMES) and rep["count"] == 80
    assert len(rep["confusion"]) == 4 and all(len(row) == 4 for row in rep["confusion"])
    assert sum(map(sum, rep["confusion"])) == 80 and rep["support"] == [20, 20, 20, 20]
    assert rep["data"].endswith("shapes.npz") and rep["accuracy"] > 0.6
    assert main(["evaluate", "--weights", str(weights), "--data-dir", str(data)]) == 0
    table = capsys.readouterr().out
    for name in NAMES:
        assert f"\n{name} " in table
    # MNIST has 10 classes, the model 4: refused with the fix, not a wrong matrix.
    mnist = Path(__file__).resolve().parents[1] / "data" / "mnist"
    assert main(["evaluate", "--weights", str(weights), "--data-dir", str(mnist)]) == 2
    assert "the data it was trained on" in capsys.readouterr().err


def test_explain_takes_a_test_image_of_its_own_data(trained, tmp_path, capsys) -> None:
    _, weights = trained
    argv = ["explain", "--weights", str(weights), "--test-index", "0", "--method", "saliency"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # The shapes' test image 0, named: not MNIST's first digit (a 7).
    label = int(out.split("(label ")[1].split(":")[0])
    assert f"(label {label}: {NAMES[label]})" in out


def test_serves_four_named_classes(trained) -> None:
    _, weights = trained
    app = create_app(
        served_models([ModelChoice(weights=str(weights))]), allowed_hosts=["testserver"]
    )
    client = TestClient(app, raise_server_exceptions=False)
    (info,) = client.get("/api/models").json()
    assert info["classes"] == list(NAMES)
    digit = client.get("/api/test-digits/0").json()
    assert digit["name"] == NAMES[digit["label"]] and digit["size"] == [28, 28]
    pixels = [v / 255 for v in base64.b64decode(digit["pixels"])]
    res = client.post("/api/predict", json={"pixels": pixels, "stages": "none"}).json()
    assert len(res["probabilities"]) == 4 and abs(sum(res["probabilities"]) - 1) < 1e-4
    body = {"pixels": pixels, "stages": "none", "explain": "saliency"}
    assert client.post("/api/predict", json={**body, "target": 3}).status_code == 200
    bad = client.post("/api/predict", json={**body, "target": 4})
    assert bad.status_code == 422 and "target: 4 is not a class" in bad.text
    ev = client.get(f"/api/evaluation/{info['id']}").json()
    assert ev["classes"] == list(NAMES) and len(ev["confusion"]) == 4
    assert {len(row) for row in ev["confusion"]} == {4} and ev["count"] == 80
    cell = client.get(f"/api/evaluation/{info['id']}/cell?true=3&pred=3").json()
    assert all(d["label"] == 3 and d["pred"] == 3 for d in cell["digits"])
    bad = client.get(f"/api/evaluation/{info['id']}/cell?true=4&pred=0")
    assert bad.status_code == 422 and "true" in bad.text and "4 (0–3)" in bad.text
    # The Embedding tab: the four classes' weight vectors and means.
    emb = client.get(f"/api/embedding/{info['id']}").json()
    assert sorted(set(emb["labels"])) == [0, 1, 2, 3]
    assert len(emb["classes"]["weights"]) == len(emb["classes"]["means"]) == 4


def test_training_refuses_data_the_model_cannot_take(tmp_path: Path, capsys) -> None:
    x = np.zeros((24, 20, 16), np.uint8)
    y = np.arange(24) % 3
    np.savez(tmp_path / "small.npz", x_train=x, y_train=y, x_test=x[:6], y_test=y[:6])
    argv = ["train", "--model", "lenet5", "--data-dir", str(tmp_path), "--steps", "1"]
    assert main([*argv, "--run-dir", str(tmp_path / "run")]) == 2
    assert "images are 20×16 but the model takes 28×28" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    x28 = np.zeros((0, 28, 28), np.uint8)
    np.savez(
        empty / "d.npz", x_train=x28, y_train=y[:0], x_test=np.zeros((3, 28, 28)), y_test=y[:3]
    )
    assert main(["train", "--data-dir", str(empty), "--run-dir", str(tmp_path / "r2")]) == 2
    assert "no training images" in capsys.readouterr().err
