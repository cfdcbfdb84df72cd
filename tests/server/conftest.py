"""Fixtures of the server tests: the shipped deep_mnist and a tiny lenet5, served together."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import cnnscope
from cnnscope.models import build_model
from cnnscope.server.app import ServedModel, create_app


@pytest.fixture(scope="module")
def shipped():
    return cnnscope.load_model("deep_mnist")


@pytest.fixture(scope="module")
def client(shipped, mnist) -> TestClient:
    model, meta = shipped
    other = build_model("lenet5").eval()
    app = create_app(
        [ServedModel("deep_mnist", model, meta, "shipped"), ServedModel("tiny", other, {}, "test")],
        data=mnist,
        allowed_hosts=["testserver"],  # TestClient's Host
    )
    return TestClient(app, raise_server_exceptions=False)
