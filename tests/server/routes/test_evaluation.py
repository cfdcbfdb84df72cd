from __future__ import annotations

import base64

import numpy as np


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
