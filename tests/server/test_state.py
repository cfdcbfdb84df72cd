from __future__ import annotations

import numpy as np
import torch
from fastapi.testclient import TestClient

from cnnscope.analysis.activations import record
from cnnscope.data import to_float
from cnnscope.server.app import ServedModel, create_app
from cnnscope.server.encoding import decode


def test_concurrent_requests_do_not_mix(shipped, mnist) -> None:
    """Hooks are shared per model; concurrent requests must each get their own maps."""
    from concurrent.futures import ThreadPoolExecutor

    model, meta = shipped
    client = TestClient(
        create_app(
            [ServedModel("m", model, meta, "shipped")], data=mnist, allowed_hosts=["testserver"]
        )
    )
    bodies = [
        {"pixels": (mnist.test_images[i].flatten().float() / 255).tolist()} for i in range(16)
    ]

    def call(i: int) -> tuple[int, dict]:
        return i, client.post("/api/predict", json=bodies[i]).json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(16)))
    for i, res in results:
        want = record(model, to_float(mnist.test_images[i][None]), ["fc1"])["fc1"][0].numpy()
        assert np.abs(decode(res["stages"]["fc1"]) - want).max() < np.ptp(want) / 255 + 1e-5
        assert res["predicted"] == int(torch.tensor(res["logits"]).argmax())


def test_slow_work_does_not_block_predict(shipped, mnist, tmp_path, monkeypatch) -> None:
    """An evaluation (seconds) running in a worker thread leaves /api/predict responsive."""
    import threading
    import time

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # uncached: the evaluation is slow

    model, meta = shipped
    app = create_app(
        [ServedModel("m", model, meta, "shipped")], data=mnist, allowed_hosts=["testserver"]
    )
    with TestClient(app) as c:
        body = {"pixels": (mnist.test_images[0].flatten().float() / 255).tolist()}
        worker = threading.Thread(target=lambda: c.get("/api/evaluation/m"))
        worker.start()
        time.sleep(0.3)
        t0 = time.perf_counter()
        for _ in range(5):
            assert c.post("/api/predict", json=body).status_code == 200
        during = time.perf_counter() - t0
        overlapped = worker.is_alive()  # the evaluation was still running meanwhile
        worker.join()
    assert overlapped
    assert during < 2.0  # five predictions, not one evaluation (~5 s) long


def test_copies_are_taken_under_the_model_lock(shipped) -> None:
    """A copy taken while a request records the model must not carry its hooks."""
    import threading

    from cnnscope.analysis.activations import StageRecorder

    model, meta = shipped
    m = ServedModel("m", model, meta, "shipped")
    copies = []
    with m.lock, StageRecorder(model, ["conv1", "fc1"]):
        t = threading.Thread(target=lambda: copies.append(m.snapshot()))
        t.start()
        t.join(0.3)
        assert t.is_alive()  # waits for the request to finish
    t.join()
    assert not any(mod._forward_hooks for mod in copies[0].modules())
    with m.worker("slow") as copy:
        assert not any(mod._forward_hooks for mod in copy.modules())


def test_derived_stages_come_from_stage_kinds(shipped) -> None:
    model, meta = shipped
    m = ServedModel("m", model, meta, "shipped")
    for d in m.derived:
        assert m.stages[d.name].kind == ("act" if d.op == "relu" else "pool")
    assert "logits" not in m.sent and m.stages["logits"].kind == "logits"


def test_lru_forgets_the_least_recently_used() -> None:
    from cnnscope.server.state import LRU

    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and len(cache) == 2
    assert cache.get_or_make("a", lambda: 99) == 1
    assert cache.get_or_make("d", lambda: 4) == 4 and "c" not in cache


def test_every_cache_of_a_served_model_is_bounded(shipped) -> None:
    from cnnscope.server.state import LRU

    model, meta = shipped
    m = ServedModel("m", model, meta, "shipped")
    for cache in (m._explainers, m.feature_jobs, m.unit_scores):
        assert isinstance(cache, LRU) and cache.maxsize <= 32
    assert m.renders.capacity <= 3


def test_pooling_is_derived_only_when_the_page_computes_it_exactly() -> None:
    # codec.js's maxpool2 is 2×2, stride 2, no padding, floor: anything else travels as is.
    from torch import nn

    from cnnscope.models import StageInfo
    from cnnscope.server.state import _derived_op

    info = StageInfo("p", "pool", (1, 2, 2), "MaxPool2d")
    assert _derived_op(info, nn.MaxPool2d(2)) == "maxpool2"
    assert _derived_op(info, nn.MaxPool2d(2, padding=1)) is None
    assert _derived_op(info, nn.MaxPool2d(2, ceil_mode=True)) is None
    assert _derived_op(info, nn.MaxPool2d(3, stride=2)) is None


def test_an_untrained_own_model_shows_no_snapshots_from_the_working_folder(
    tmp_path, monkeypatch
) -> None:
    # Found from outside: a model served without --weights looked for ./snapshots…, so
    # an unrelated run's embedding could be shown for it.
    from cnnscope.models import build_model
    from cnnscope.train import runs

    monkeypatch.chdir(tmp_path)
    (tmp_path / runs.SNAPSHOTS).write_bytes(b"someone else's run")
    model = build_model("lenet5")
    assert ServedModel("Net", model, {}, "fresh").embedding_source() is None
    weights = tmp_path / "model.safetensors"
    assert ServedModel("x", model, {}, str(weights)).embedding_source() == tmp_path / runs.SNAPSHOTS
