from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from cnnscope.models import build_model
from cnnscope.server.app import ServedModel, create_app
from cnnscope.server.middleware import MAX_BODY_BYTES


def test_body_over_limit_413(client) -> None:
    big = json.dumps({"png": "A" * (MAX_BODY_BYTES + 10)})
    r = client.post("/api/predict", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    # and the server keeps serving
    assert client.get("/api/health").status_code == 200


def test_chunked_body_over_limit_413(client) -> None:
    """A body with no Content-Length is counted as it arrives (issue 12 #8: was 400)."""

    def chunks():
        yield b'{"png": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"A" * 65536
        yield b'"}'

    r = client.post("/api/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    small = (b'{"pixels": [' + b",".join([b"0"] * 784) + b"]}",)
    r = client.post(
        "/api/predict", content=iter(small), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200  # a chunked body under the limit is replayed intact


def test_server_timing_header(client) -> None:
    assert client.get("/api/health").headers["server-timing"].startswith("app;dur=")


@pytest.mark.parametrize(
    ("base", "allowed", "status"),
    [
        ("http://localhost:8000", (), 200),
        ("http://127.0.0.1:8000", (), 200),
        ("http://[::1]:8000", (), 200),
        ("http://evil.example:8000", (), 400),  # DNS rebinding: evil.example → 127.0.0.1
        ("http://127.0.0.1.evil.example", (), 400),
        ("http://box.lan:8000", ("box.lan",), 200),
        ("http://box.lan:8000", ("other.lan",), 400),
        ("http://anything:1", ("*",), 200),
    ],
)
def test_host_allow_list(mnist, base, allowed, status) -> None:
    """Issue 12 #7: only loopback names and the allowed hosts are answered."""
    model = ServedModel("tiny", build_model("lenet5"), {}, "test")
    c = TestClient(create_app([model], data=mnist, allowed_hosts=allowed), base_url=base)
    for path in ("/api/health", "/"):
        r = c.get(path)
        assert r.status_code == status, (base, path, r.text)
    if status == 400:
        assert "--allowed-host" in r.json()["detail"]


def test_cross_origin_requests_do_not_start_work(mnist) -> None:
    """Issue 12 #7: another site's page can start no prediction, render or evaluation."""
    m = ServedModel("tiny", build_model("lenet5"), {}, "test")
    c = TestClient(create_app([m], data=mnist), base_url="http://127.0.0.1:8000")
    evil = {"Origin": "http://evil.example"}
    body = {"pixels": [0.0] * 784}
    for r in (
        c.post("/api/predict", json=body, headers=evil),
        c.post("/predict", json=[0] * 784, headers={"Origin": "null"}),
        c.get("/api/features/tiny/conv1", headers=evil),
        c.get("/api/features/tiny/conv1", headers={"Sec-Fetch-Site": "cross-site"}),
        c.get("/api/evaluation/tiny", headers={"Sec-Fetch-Site": "same-site"}),
        c.get("/api/top-examples/tiny/conv1/0", headers=evil),
    ):
        assert r.status_code == 403 and "cross-origin" in r.json()["detail"], r.text
    assert len(m.feature_jobs) == 0 and m.evaluation is None
    # Our own page (same origin), and clients that send no Origin, are served.
    ours = {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}
    assert c.post("/api/predict", json=body, headers=ours).status_code == 200
    assert c.post("/api/predict", json=body).status_code == 200
    # A link from another site to the page itself still opens it.
    assert c.get("/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


def test_gzipped_compresses_only_what_the_client_accepts_and_is_worth_it() -> None:
    import gzip

    from cnnscope.server.middleware import GZIP_MIN_BYTES, gzipped

    body = b'{"data": "' + b"AAAA" * GZIP_MIN_BYTES + b'"}'
    out, headers = gzipped(body, "gzip, deflate, br")
    assert headers == {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
    assert gzip.decompress(out) == body and len(out) < len(body) / 10
    assert gzipped(body, "identity") == (body, {})
    assert gzipped(b"{}", "gzip") == (b"{}", {})  # too small to be worth a header
