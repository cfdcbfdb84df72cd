"""Training runs over HTTP: start, follow, list, stop, resume; every bad request is a 4xx."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import cnnscope
from cnnscope.checkpoints import open_model
from cnnscope.server.app import ServedModel, create_app
from cnnscope.train.manager import MAX_STEPS

TERMINAL = ("stopped", "done", "failed")


def _app(runs_dir: Path, training: bool = True) -> TestClient:
    model, meta = cnnscope.load_model("hvass")
    app = create_app(
        [ServedModel("hvass", model, meta, "shipped")],
        runs_dir=runs_dir,
        training=training,
        training_off="the server binds 0.0.0.0; restart it with --allow-training",
        allowed_hosts=["testserver"],
    )
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def client(runs_dir: Path):
    c = _app(runs_dir)
    yield c
    c.app.state.runs.close()  # type: ignore[attr-defined]


def _wait(client: TestClient, run_id: str, until, timeout: float = 180.0) -> dict:
    """Poll the run until ``until(detail)``; the server's own state, not a sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = client.get(f"/api/runs/{run_id}").json()
        if until(detail):
            return detail
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} never got there: {detail}")


def _events(client: TestClient, run_id: str) -> list[tuple[str, dict]]:
    with client.stream("GET", f"/api/runs/{run_id}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "resnet50", "steps": 10}, "model"),
        ({"model": "hvass", "recipe": "slow", "steps": 10}, "recipe"),
        ({"model": "hvass", "steps": 0}, "steps"),
        ({"model": "hvass", "steps": -5}, "steps"),
        ({"model": "hvass", "steps": MAX_STEPS + 1}, "steps"),
        ({"model": "hvass", "steps": 10**30}, "steps"),
        ({"model": "hvass", "epochs": 0}, "epochs"),
        ({"model": "hvass", "epochs": 1e6}, "epochs"),
        ({"model": "hvass", "epochs": 1e306}, "epochs"),  # was a 500 (OverflowError)
        ({"model": "hvass", "steps": 10, "epochs": 1}, "steps"),
        ({"model": "hvass", "steps": 10, "seed": -1}, "seed"),
        ({"model": "hvass", "steps": 10, "lr": 1}, "lr"),
        ({"steps": 10}, "model"),
    ],
)
def test_bad_start_requests_name_the_field(client: TestClient, runs_dir: Path, body, field) -> None:
    before = sorted(runs_dir.iterdir())
    r = client.post("/api/runs", json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"]
    assert sorted(runs_dir.iterdir()) == before  # nothing made


def test_unknown_run_is_404(client: TestClient) -> None:
    for method, url in [
        ("GET", "/api/runs/nope"),
        ("GET", "/api/runs/nope/events"),
        ("POST", "/api/runs/nope/stop"),
        ("POST", "/api/runs/nope/resume"),
        ("DELETE", "/api/runs/nope"),
        ("GET", "/api/runs/../../etc/passwd"),
    ]:
        r = client.request(method, url)
        assert r.status_code == 404, (url, r.text)


def test_training_off_is_403_with_the_reason(tmp_path: Path) -> None:
    c = _app(tmp_path, training=False)
    r = c.post("/api/runs", json={"model": "hvass", "steps": 10})
    assert r.status_code == 403
    assert "--allow-training" in r.json()["detail"]
    assert c.get("/api/training").json()["enabled"] is False
    assert c.delete("/api/runs/x").status_code == 403  # deleting is training's too
    assert c.get("/api/runs").json() == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_tiny_run_trains_is_listed_served_and_followed(client: TestClient, runs_dir: Path):
    r = client.post("/api/runs", json={"model": "hvass", "steps": 30, "seed": 1})
    assert r.status_code == 202
    run_id, model_id = r.json()["id"], r.json()["model"]
    assert model_id == f"run:{run_id}"
    # One training at a time: a second start is refused, naming the one that trains.
    second = client.post("/api/runs", json={"model": "hvass", "steps": 30})
    assert second.status_code == 409 and run_id in second.json()["detail"]
    assert [x["id"] for x in client.get("/api/runs").json()] == [run_id]

    detail = _wait(client, run_id, lambda d: d["status"] in TERMINAL)
    assert detail["status"] == "done", detail
    assert detail["step"] == detail["total_steps"] == 30
    assert detail["config"]["model"] == "hvass" and detail["config"]["seed"] == 1
    splits = [(m["split"], m["step"]) for m in detail["metrics"]]
    assert splits == [("train", 10), ("train", 20), ("train", 30), ("validation", 30), ("test", 30)]
    assert detail["metrics"][-1]["accuracy"] > 0.5  # 30 steps of hvass: well past chance

    # Stopping or resuming a finished run is refused; its folder stays whole.
    files = sorted(p.name for p in (runs_dir / run_id).iterdir())
    assert client.post(f"/api/runs/{run_id}/stop").status_code == 409
    assert "done" in client.post(f"/api/runs/{run_id}/resume").json()["detail"]
    assert sorted(p.name for p in (runs_dir / run_id).iterdir()) == files
    assert {"model.safetensors", "state.safetensors", "metrics.jsonl", "snapshots"} <= set(files)

    # The run is a model: listed, and every route answers with its weights.
    models = {m["id"]: m for m in client.get("/api/models").json()}
    assert models[model_id]["metrics"]["steps"] == 30 and models[model_id]["embedding"]
    weights, _ = cnnscope.load_weights(runs_dir / run_id / "model.safetensors")
    digit = np.zeros(784)
    digit[300:310] = 1.0
    p = client.post("/api/predict", json={"pixels": digit.tolist(), "model": model_id}).json()
    with torch.no_grad():
        x = torch.tensor(digit, dtype=torch.float32).view(1, 1, 28, 28)
        expect = torch.softmax(weights(x)[0], 0)
    assert np.allclose(p["probabilities"], expect.numpy(), atol=1e-5)
    assert client.get(f"/api/models/{model_id}/filters/conv1").status_code == 200

    # The event stream replays the run and ends with `done`.
    events = _events(client, run_id)
    names = [n for n, _ in events]
    assert names.count("metrics") == 5 and names[-1] == "done"
    assert [d["step"] for n, d in events if n == "snapshot"] == [0, 30]
    assert "checkpoint" in names and "progress" in names

    # The live layouts: one frame per snapshot.
    layouts = client.get(f"/api/runs/{run_id}/embedding").json()
    assert [f["step"] for f in layouts["frames"]] == [0, 30]
    assert len(layouts["frames"][0]["coords"]) == 1000

    # A server started again on the folder lists the run as it is.
    again = _app(runs_dir)
    assert [(x["id"], x["status"]) for x in again.get("/api/runs").json()] == [(run_id, "done")]
    assert model_id in [m["id"] for m in again.get("/api/models").json()]


@pytest.mark.slow
def test_stop_then_resume_finishes_the_run(client: TestClient, runs_dir: Path) -> None:
    r = client.post("/api/runs", json={"model": "hvass", "steps": 200, "seed": 2})
    run_id = r.json()["id"]
    _wait(client, run_id, lambda d: d["step"] >= 20 or d["status"] in TERMINAL)
    stopped = client.post(f"/api/runs/{run_id}/stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "stopped"
    step = stopped.json()["step"]
    assert 20 <= step < 200
    # The stop wrote the weights of its step (metrics lines come every 10 steps, so the
    # stop step is at or past the last line), and the model picker serves them.
    checkpoint = stopped.json()["checkpoint_step"]
    assert checkpoint is not None and step <= checkpoint < step + 10
    models = {m["id"]: m for m in client.get("/api/models").json()}
    assert models[f"run:{run_id}"]["metrics"]["steps"] == checkpoint
    assert client.post(f"/api/runs/{run_id}/stop").status_code == 409  # not training now
    resumed = client.post(f"/api/runs/{run_id}/resume")
    assert resumed.status_code == 202
    assert client.post(f"/api/runs/{run_id}/resume").status_code == 409  # already going
    refused = client.delete(f"/api/runs/{run_id}")  # not while it trains
    assert refused.status_code == 409 and "stop it" in refused.json()["detail"]
    detail = _wait(client, run_id, lambda d: d["status"] in ("done", "failed"))
    assert detail["status"] == "done" and detail["step"] == 200
    train_steps = [m["step"] for m in detail["metrics"] if m["split"] == "train"]
    assert train_steps == sorted(set(train_steps))  # no step twice after the resume
    assert [m["step"] for m in detail["metrics"] if m["split"] == "validation"] == [100, 200]

    # Deleted: its folder, its place in the list and in the model picker are gone.
    assert f"run:{run_id}" in [m["id"] for m in client.get("/api/models").json()]
    deleted = client.delete(f"/api/runs/{run_id}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": run_id, "model": f"run:{run_id}"}
    assert not (runs_dir / run_id).exists()
    assert run_id not in [x["id"] for x in client.get("/api/runs").json()]
    assert f"run:{run_id}" not in [m["id"] for m in client.get("/api/models").json()]
    assert client.get(f"/api/runs/{run_id}").status_code == 404
    assert (
        client.post(
            "/api/predict", json={"pixels": [0] * 784, "model": f"run:{run_id}"}
        ).status_code
        == 404
    )


OWN = f"{Path(__file__).parents[2] / 'models' / 'unlike_ours.py'}:UnlikeOurs"
NORM = (0.1307, 0.3081)


def _own_app(runs_dir: Path, own: bool = True) -> TestClient:
    """hvass, and (``own``) the test's own model served as ``UnlikeOurs``."""
    from cnnscope.cli._common import ModelChoice
    from cnnscope.server.app import served_models

    choices = [ModelChoice(OWN, None, NORM)] if own else []
    app = create_app(
        served_models([*choices, ModelChoice("hvass")]),
        runs_dir=runs_dir,
        training=True,
        allowed_hosts=["testserver"],
    )
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.slow
def test_your_own_served_model_trains_and_is_served_with_its_spec(tmp_path: Path) -> None:
    c = _own_app(tmp_path)
    try:
        assert c.get("/api/training").json()["models"][-1] == "UnlikeOurs"
        # Only served ids: an unknown id, or a spec the server was not started with.
        for model in ("UnlikeTheirs", OWN):
            r = c.post("/api/runs", json={"model": model, "steps": 30})
            assert r.status_code == 422 and "model" in r.json()["detail"], r.text
            assert "UnlikeOurs" in r.json()["detail"]  # the valid ids, ours among them
        assert list(tmp_path.iterdir()) == []

        r = c.post("/api/runs", json={"model": "UnlikeOurs", "steps": 30, "seed": 3})
        assert r.status_code == 202, r.text
        run_id, model_id = r.json()["id"], r.json()["model"]
        assert run_id.startswith("unlikeours-")
        detail = _wait(c, run_id, lambda d: d["status"] in TERMINAL)
        assert detail["status"] == "done", detail
        assert detail["settings"] == {
            "model": OWN, "recipe": "fast", "steps": 30, "seed": 3,
            "normalize": list(NORM), "input_size": [28, 28],
        }  # fmt: skip
        command = json.loads((tmp_path / run_id / "run.json").read_text())["command"]
        assert command[command.index("--model") + 1] == OWN
        assert command[command.index("--normalize") + 1] == "0.1307,0.3081"

        # run:<id> is the trained UnlikeOurs, normalization inside: predict agrees with it.
        models = {m["id"]: m for m in c.get("/api/models").json()}
        assert models[model_id]["metrics"]["steps"] == 30
        assert "head.fc1" in [s["name"] for s in models[model_id]["stages"]]
        trained, _ = open_model(OWN, tmp_path / run_id / "model.safetensors")
        digit = np.zeros(784)
        digit[300:310] = 1.0
        p = c.post("/api/predict", json={"pixels": digit.tolist(), "model": model_id}).json()
        with torch.no_grad():
            x = torch.tensor(digit, dtype=torch.float32).view(1, 1, 28, 28)
            expect = torch.softmax(trained(x)[0], 0)
        assert trained.normalize == NORM  # recorded with the weights
        assert np.allclose(p["probabilities"], expect.numpy(), atol=1e-5)
    finally:
        c.app.state.runs.close()  # type: ignore[attr-defined]

    # A server started without that model lists the run but imports no code for it.
    other = _own_app(tmp_path, own=False)
    listed = other.get("/api/runs").json()
    assert [(x["id"], x["status"], x["model"]) for x in listed] == [(run_id, "done", None)]
    assert model_id not in [m["id"] for m in other.get("/api/models").json()]
    refused = other.post(f"/api/runs/{run_id}/resume")
    assert refused.status_code == 409 and f"--model {OWN}" in refused.json()["detail"]
    # With it, the run is served again.
    again = _own_app(tmp_path)
    assert model_id in [m["id"] for m in again.get("/api/models").json()]
