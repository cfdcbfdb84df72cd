from __future__ import annotations

import base64


def test_test_digits(client, mnist) -> None:
    d = client.get("/api/test-digits/7").json()
    assert d["label"] == int(mnist.test_labels[7])
    assert base64.b64decode(d["pixels"]) == mnist.test_images[7].numpy().tobytes()
    assert client.get("/api/test-digits/random").status_code == 200
    assert client.get("/api/test-digits/10000").status_code == 404
