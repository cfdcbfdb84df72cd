from __future__ import annotations

import json

from cnnscope.server.middleware import MAX_BODY_BYTES


def test_body_over_limit_413(client) -> None:
    big = json.dumps({"png": "A" * (MAX_BODY_BYTES + 10)})
    r = client.post("/api/predict", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    # and the server keeps serving
    assert client.get("/api/health").status_code == 200
