from __future__ import annotations

import numpy as np


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


def test_a_missing_extra_is_a_501_naming_it(shipped, mnist, monkeypatch) -> None:
    # Without openTSNE a run's embedding raised MissingExtra in the worker: a 500.
    from fastapi.testclient import TestClient

    from cnnscope._extras import MissingExtra
    from cnnscope.server.app import ServedModel, create_app
    from cnnscope.server.routes import embedding

    def missing(*_a, **_k):  # type: ignore[no-untyped-def]
        raise MissingExtra("openTSNE", "tsne", "t-SNE")

    monkeypatch.setattr(embedding, "_embedding_json", missing)
    model, meta = shipped
    app = create_app(
        [ServedModel("m", model, meta, "test")], data=mnist, allowed_hosts=["testserver"]
    )
    r = TestClient(app, raise_server_exceptions=False).get("/api/embedding/m")
    assert r.status_code == 501 and "cnnscope[tsne]" in r.json()["detail"]


def test_damaged_run_snapshots_are_a_422_naming_the_folder(mnist, tmp_path) -> None:
    # Found in review: a run whose snapshots/ is damaged answered 500.
    from fastapi.testclient import TestClient

    from cnnscope.models import build_model
    from cnnscope.server.app import ServedModel, create_app

    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    (run / "snapshots" / "index.json").write_text('{"snapshots": [{"file": "gone"}]}')
    served = [ServedModel("r", build_model("lenet5").eval(), {}, str(run / "model.safetensors"))]
    app = create_app(served, data=mnist, allowed_hosts=["testserver"])
    c = TestClient(app, raise_server_exceptions=False)
    assert c.get("/api/models/r").json()["embedding"] is True
    r = c.get("/api/embedding/r")
    assert r.status_code == 422 and "snapshots" in r.json()["detail"]
