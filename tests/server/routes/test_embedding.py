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
