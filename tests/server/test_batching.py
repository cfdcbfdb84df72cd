from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from cnnscope.server.batching import Batcher
from cnnscope.server.pool import Busy


def _gated(gate: threading.Event, sizes: list[int]):
    def run(items):
        sizes.append(len(items))
        gate.wait(5)
        return [x * 10 for x in items]

    return run


def test_waiting_requests_share_one_batch_and_get_their_own_rows() -> None:
    gate, sizes = threading.Event(), []
    b = Batcher("t", _gated(gate, sizes), window_s=0)

    async def main() -> list[int]:
        first = asyncio.ensure_future(b.submit(0))
        while not sizes:  # the first batch is running (and blocked on the gate)
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(b.submit(i)) for i in range(1, 8)]
        await asyncio.sleep(0.01)  # the other seven queue behind it
        gate.set()
        return list(await asyncio.gather(first, *rest))

    assert asyncio.run(main()) == [i * 10 for i in range(8)]
    assert sizes == [1, 7] and (b.batches, b.items) == (2, 8)
    b.stop()


def test_max_batch_splits_and_window_collects_stragglers() -> None:
    sizes: list[int] = []
    b = Batcher("t", lambda xs: sizes.append(len(xs)) or list(xs), max_batch=3, window_s=0.2)

    async def main() -> list[int]:
        jobs = [asyncio.ensure_future(b.submit(i)) for i in range(5)]
        return list(await asyncio.gather(*jobs))

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]
    assert sizes == [3, 2]  # the window waited for the rest, max_batch cut at 3
    b.stop()


def test_an_error_reaches_every_waiting_request_and_the_batcher_goes_on() -> None:
    def run(items):
        if -1 in items:
            raise ValueError("bad batch")
        return items

    b = Batcher("t", run, window_s=0.05)

    async def main() -> list[object]:
        jobs = [b.submit(1), b.submit(-1)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    got = asyncio.run(main())
    assert all(isinstance(e, ValueError) for e in got)
    assert asyncio.run(b.submit(5)) == 5
    b.stop()


def test_too_many_waiting_is_refused_with_503() -> None:
    gate, sizes = threading.Event(), []
    b = Batcher("t", _gated(gate, sizes), max_batch=1, window_s=0, waiting=2)

    async def main() -> None:
        running = asyncio.ensure_future(b.submit(0))
        while not sizes:
            await asyncio.sleep(0.001)
        queued = [asyncio.ensure_future(b.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        with pytest.raises(Busy) as e:
            await b.submit(3)
        assert e.value.status_code == 503
        gate.set()
        assert await asyncio.gather(running, *queued) == [0, 10, 20]

    asyncio.run(main())
    b.stop()


def test_stopped_batcher_refuses_and_its_thread_ends() -> None:
    b = Batcher("t", lambda xs: list(xs))
    assert asyncio.run(b.submit(2)) == 2
    thread = b._thread
    b.stop()
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="stopped"):
        asyncio.run(b.submit(3))


def test_served_model_batches_concurrent_predictions(shipped, mnist) -> None:
    from fastapi.testclient import TestClient

    from cnnscope.server.app import ServedModel, create_app

    model, meta = shipped
    m = ServedModel("m", model, meta, "shipped")
    app = create_app([m], data=mnist, allowed_hosts=["testserver"])
    client = TestClient(app)
    slow = m.forward_rows

    def forward_rows(images):  # a slow forward pass: requests pile up behind it
        time.sleep(0.05)
        return slow(images)

    m.predictions._run = forward_rows
    bodies = [{"pixels": (mnist.test_images[i].flatten().float() / 255).tolist()} for i in range(8)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: client.post("/api/predict", json=b).json(), bodies))
    assert [a["predicted"] for a in answers] == mnist.test_labels[:8].tolist()
    assert m.predictions.batches < 8  # some requests shared a forward pass
    assert np.isclose(sum(answers[0]["probabilities"]), 1, atol=1e-4)


def test_a_retired_batcher_answers_what_waits_then_lets_its_thread_go() -> None:
    # A run's model replaced by its next checkpoint: without retire, its batch thread
    # (and through it the whole old model) lived for as long as the server.
    gate, sizes = threading.Event(), []
    b = Batcher("t", _gated(gate, sizes))

    async def two() -> list[int]:
        first = asyncio.ensure_future(b.submit(1))
        await asyncio.sleep(0.05)  # the thread holds job 1 at the gate
        b.retire()
        second = asyncio.ensure_future(b.submit(2))  # queued before the thread is idle
        await asyncio.sleep(0.05)
        gate.set()
        return [await first, await second]

    assert asyncio.run(two()) == [10, 20]
    for t in threading.enumerate():
        if t.name == "cnnscope-batch-t":
            t.join(5)
            assert not t.is_alive()
    assert asyncio.run(b.submit(3)) == 30  # a late request still gets its answer


def test_then_runs_on_the_batch_thread_and_its_error_fails_its_request_alone() -> None:
    # A prediction's JSON is rendered by the batcher's thread right after the pass: no
    # hop back to the event loop and out to the pool again.
    b = Batcher("t", lambda xs: [x * 10 for x in xs], window_s=0.05)
    threads: list[str] = []

    def then(r: int) -> str:
        threads.append(threading.current_thread().name)
        if r == 10:
            raise ValueError("bad row")
        return f"<{r}>"

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(3)]
        for i, f in enumerate(futures):
            b.put(i, loop, f, then)
        return list(await asyncio.gather(*futures, return_exceptions=True))

    first, bad, third = asyncio.run(main())
    assert (first, third) == ("<0>", "<20>")
    assert isinstance(bad, ValueError)
    assert threads == ["cnnscope-batch-t"] * 3 and b.batches == 1
    b.stop()
