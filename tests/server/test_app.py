from __future__ import annotations

import re


def test_static_page_served_offline(client) -> None:
    html = client.get("/").text
    assert '<script type="module" src="app.js">' in html
    for asset in (
        "app.js",
        "api.js",
        "embed.js",
        "eval.js",
        "features.js",
        "pad.js",
        "render.js",
        "style.css",
    ):
        r = client.get(f"/{asset}")
        assert r.status_code == 200, asset
        assert "http://" not in r.text and "https://" not in r.text, asset  # no CDN


def test_openapi_docs_work_offline(client) -> None:
    html = client.get("/docs").text
    assert "swagger-ui-bundle.js" in html
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
    assert urls and not [u for u in urls if u.startswith(("http://", "https://", "//"))], urls
    for u in urls:
        assert client.get(u).status_code == 200, u
    schema = client.get("/openapi.json").json()
    assert "/api/predict" in schema["paths"] and "PredictRequest" in schema["components"]["schemas"]


def test_malformed_json_and_wrong_content_type(client) -> None:
    r = client.post("/api/predict", content="{", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = client.post("/api/predict", content="pixels=1", headers={"Content-Type": "text/plain"})
    assert 400 <= r.status_code < 500


def test_nan_and_inf_rejected(client) -> None:
    for token in ("NaN", "Infinity", "-Infinity"):
        text = '{"pixels": [' + ", ".join([token] + ["0"] * 783) + "]}"
        r = client.post("/api/predict", content=text, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, token
