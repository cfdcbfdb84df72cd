"""The top-examples index is built when the server starts, once, and cached on disk."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from cnnscope.analysis import features
from cnnscope.analysis.features import top_examples
from cnnscope.data import MNIST
from cnnscope.models import build_model
from cnnscope.server import background
from cnnscope.server.app import ServedModel, create_app


@pytest.fixture
def small(mnist) -> MNIST:
    """The first 500 test digits: the index builds in a moment."""
    from dataclasses import replace

    return replace(
        mnist,
        test_images=mnist.test_images[:500],
        test_labels=mnist.test_labels[:500],
        checksum=mnist.checksum[:8] + "-first-500",
    )


@pytest.fixture
def builds(monkeypatch) -> list[int]:
    """Counts index builds (scans of the test set), each made slow enough to overlap."""
    calls: list[int] = []
    real = features.unit_index

    def counted(*args, **kwargs):
        calls.append(1)
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(background, "unit_index", counted)
    return calls


def _app(small: MNIST) -> tuple[ServedModel, TestClient]:
    torch.manual_seed(0)
    m = ServedModel("tiny", build_model("lenet5").eval(), {}, "test")
    return m, TestClient(create_app([m], data=small, allowed_hosts=["testserver"]))


def test_clicks_before_the_index_is_ready_share_its_one_build(
    small, builds, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    m, client = _app(small)
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda u: client.get(f"/api/top-examples/tiny/fc1/{u}?k=5"), range(4))
        )
    assert [a.status_code for a in answers] == [200] * 4
    assert len(builds) == 1  # four clicks, one scan
    for u, a in enumerate(answers):
        want = top_examples(m.model, small.test_images, "fc1", u, 5)
        assert [t["index"] for t in a.json()] == [t.index for t in want]
    # A restarted server (same weights, same digits) reads the index from disk.
    _, again = _app(small)
    assert again.get("/api/top-examples/tiny/conv2/3?k=9").status_code == 200
    assert len(builds) == 1
    assert list((tmp_path / "cnnscope" / "units").glob("*-index-*.safetensors"))


def test_the_server_starts_the_build_without_a_click(small, builds, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    m, client = _app(small)
    with client:  # runs the app's startup
        deadline = time.monotonic() + 30
        while not (m.index_job is not None and m.index_job.done()):
            assert time.monotonic() < deadline, "the index was never built"
            time.sleep(0.05)
        t0 = time.perf_counter()
        top = client.get("/api/top-examples/tiny/relu1/2?k=9").json()
        assert time.perf_counter() - t0 < 5  # a lookup, not a scan (generous: busy CI)
    assert len(builds) == 1 and len(top) == 9
    assert top[0]["score"] >= top[-1]["score"]


def test_start_up_indexes_the_served_models_not_every_run(small, builds, tmp_path, monkeypatch):
    # Found from outside: each past run's checkpoint was scanned at start-up too, so the
    # start-up work and the disk cache grew with the runs folder.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    torch.manual_seed(0)
    served = ServedModel("tiny", build_model("lenet5").eval(), {}, "test")
    run = ServedModel("run:lenet5-20260101-000000", build_model("lenet5").eval(), {}, "test")
    client = TestClient(create_app([served, run], data=small, allowed_hosts=["testserver"]))
    with client:
        deadline = time.monotonic() + 30
        while not (served.index_job is not None and served.index_job.done()):
            assert time.monotonic() < deadline, "the index was never built"
            time.sleep(0.05)
        time.sleep(1.0)  # time enough for the background thread to reach the run's model
        assert run.index_job is None and len(builds) == 1
        url = "/api/top-examples/run:lenet5-20260101-000000/fc1/0?k=3"
        assert client.get(url).status_code == 200  # built on its first click
    assert len(builds) == 2


def test_a_failed_build_is_retried_by_the_next_click(small, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real, failures = features.unit_index, [1]

    def flaky(*args, **kwargs):
        if failures:
            failures.pop()
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(background, "unit_index", flaky)
    m, client = _app(small)
    want = top_examples(m.model, small.test_images, "fc1", 0, 9)
    scanned = client.get("/api/top-examples/tiny/fc1/0").json()  # the stage is scanned
    assert m.index_job is None and m.unit_scores.get("fc1") is not None
    indexed = client.get("/api/top-examples/tiny/fc1/0").json()
    assert m.index_job is not None and m.index_job.done()
    for got in (scanned, indexed):
        assert [t["index"] for t in got] == [t.index for t in want]
        assert np.isclose(got[0]["score"], want[0].score, atol=1e-5)


def test_index_of_holds_no_lock_while_it_waits(small, tmp_path, monkeypatch) -> None:
    """A click that waits for another thread's build does not block the model's lock."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    gate = threading.Event()
    real = features.unit_index

    def gated(*args, **kwargs):
        gate.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(background, "unit_index", gated)
    m, client = _app(small)
    state = client.app.state.cnnscope
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(background.index_of, state, m)
        while m.index_job is None:
            time.sleep(0.01)
        second = pool.submit(background.index_of, state, m)
        assert m.lock.acquire(timeout=2)  # predictions go on meanwhile
        m.lock.release()
        gate.set()
        assert first.result(30) is second.result(30)


@pytest.mark.skipif(not hasattr(__import__("os"), "setpriority"), reason="POSIX only")
def test_the_background_thread_yields_the_cpu_to_requests(small, monkeypatch) -> None:
    import os

    seen: list[int] = []

    def record(state, m):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    monkeypatch.setattr(background, "index_of", record)
    _, client = _app(small)
    thread = background.start(client.app.state.cnnscope)
    assert thread is not None
    thread.join(10)
    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    # The niceness is the thread's alone: this thread (a request's, say) keeps its own.
    # One call (one served model), at the background's niceness, or the server's own
    # when that is lower already (a suite run under `nice -n 15` is not raised to 10).
    assert seen == [max(background.NICE, here)]
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) <= here
