from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from cnnscope.models import build_model
from cnnscope.server.app import ServedModel, create_app
from cnnscope.server.pool import Busy, WorkerPool


def test_pool_refuses_past_capacity_and_frees_slots() -> None:
    pool = WorkerPool("t", workers=1, queue=1)
    gate = threading.Event()
    running = [pool.submit(gate.wait), pool.submit(gate.wait)]
    with pytest.raises(Busy) as e:
        pool.submit(gate.wait)
    assert e.value.status_code == 503 and e.value.headers == {"Retry-After": "1"}
    gate.set()
    for f in running:
        f.result(timeout=5)
    deadline = time.monotonic() + 5
    while pool.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.pending == 0 and pool.submit(lambda: 3).result(timeout=5) == 3
    pool.shutdown()


def test_saturated_pool_answers_503_and_health_stays_fast(mnist) -> None:
    """Issue 12 #4: work past the queue gets 503 + Retry-After; /api/health does not wait."""
    app = create_app(
        [ServedModel("tiny", build_model("lenet5"), {}, "test")],
        data=mnist,
        allowed_hosts=["testserver"],
    )
    state = app.state.cnnscope
    state.fast = WorkerPool("fast", workers=1, queue=1)
    gate = threading.Event()
    blockers = [state.fast.submit(gate.wait) for _ in range(2)]
    try:
        with TestClient(app) as c:
            r = c.post("/api/predict", json={"pixels": [0.0] * 784})
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "busy" in r.json()["detail"]
            times = []
            for _ in range(10):
                t0 = time.perf_counter()
                assert c.get("/api/health").status_code == 200
                times.append(time.perf_counter() - t0)
            # Every call answered (none queued behind the blocked pool), typically in ms.
            assert sorted(times)[len(times) // 2] < 0.05, times
    finally:
        gate.set()
    assert blockers[0].result(timeout=5) is True  # the running job finishes
    assert blockers[1].cancelled()  # queued work is dropped when the app stops (Ctrl-C)
