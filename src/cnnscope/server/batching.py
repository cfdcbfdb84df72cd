"""Micro-batching: concurrent predictions of one model share one forward pass.

Sixty-four people drawing at once send ~64 requests of one image each. One at a time,
each forward pass pays PyTorch's per-call overhead for a single 28×28 image (~1 ms on
deep_mnist); a batch of 16 costs ~0.4 ms per image. :class:`Batcher` runs one thread per
model that takes every waiting image (up to ``max_batch``), lingers ``window_s`` for
stragglers when the batch is not full, and answers each request's asyncio future with
its own row. A lone request pays at most ``window_s`` more; under load the batches grow
by themselves while the previous one runs, so the lock around the shared model is held
once per batch for exactly one forward pass (as TorchServe's ``batch_delay`` and
Triton's dynamic batcher do).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .pool import Busy

__all__ = ["MAX_BATCH", "WINDOW_S", "Batcher"]

T = TypeVar("T")  # one request's input
R = TypeVar("R")  # one request's result

MAX_BATCH = 64  # images per forward pass: the page's 64-drawer classroom in one
WINDOW_S = 0.001  # lingering for more requests; 1 ms is lost in a round trip of ~10 ms
WAITING = 256  # jobs waiting at most; more answer 503 (4 full batches: ~100 ms of work)


@dataclass
class _Job(Generic[T, R]):
    item: T
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    then: Callable[[R], Any] | None = None  # run on the batcher's thread, after the batch


class Batcher(Generic[T, R]):
    """Collect items from many requests; ``run`` them in batches on one thread.

    Parameters
    ----------
    name
        The thread's name (``cnnscope-batch-NAME``).
    run
        ``run(items) -> results``: one result per item, in order. It is called on the
        batcher's thread only, so it may hold a lock for the forward pass without any
        request thread waiting on that lock.
    max_batch
        Most items in one call; typical values 16–64 (a batch of 64 MNIST images takes
        ~25 ms on one core of deep_mnist).
    window_s
        How long to wait for more items once one has arrived and the batch is not full.
    waiting
        Items that may wait; one more raises :class:`~.pool.Busy` (503, Retry-After).
    """

    def __init__(
        self,
        name: str,
        run: Callable[[Sequence[T]], Sequence[R]],
        max_batch: int = MAX_BATCH,
        window_s: float = WINDOW_S,
        waiting: int = WAITING,
    ) -> None:
        if max_batch < 1 or window_s < 0:
            raise ValueError(f"batcher {name!r}: need max_batch ≥ 1 and window_s ≥ 0")
        self.name, self.max_batch, self.window_s = name, max_batch, window_s
        self.waiting = waiting
        self._run = run
        self._jobs: deque[_Job[T, R]] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._retired = False
        self.batches = 0  # forward passes so far
        self.items = 0  # items answered so far: items / batches is the mean batch size

    async def submit(self, item: T) -> R:
        """``item``'s result, computed in a batch with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self.put(item, loop, future)
        return await future

    def put(
        self,
        item: T,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        then: Callable[[R], Any] | None = None,
    ) -> None:
        """Queue ``item`` from any thread; ``future`` (of ``loop``) gets its result, or
        ``then(result)`` when given: the rest of a request's work done on the batcher's
        thread once the batch's pass is over, without a hop back to the event loop and
        out to a worker thread again. ``then`` runs outside ``run``, so outside any lock
        ``run`` holds; what it raises fails that request alone."""
        with self._cv:
            if self._stopped:
                raise RuntimeError(f"batcher {self.name} is stopped")
            if len(self._jobs) >= self.waiting:
                raise Busy(f"batch-{self.name}", self.waiting)
            if self._thread is None:  # started on first use: an idle model costs no thread
                self._thread = threading.Thread(
                    target=self._serve, name=f"cnnscope-batch-{self.name}", daemon=True
                )
                self._thread.start()
            self._jobs.append(_Job(item, loop, future, then))
            self._cv.notify()

    def stop(self) -> None:
        """End the thread after the batch in hand; later :meth:`submit` calls raise."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    def retire(self) -> None:
        """End the thread once nothing waits (a model replaced by a newer checkpoint): jobs
        in hand are answered, and a late :meth:`submit` gets a thread again for its own."""
        with self._cv:
            self._retired = True
            self._cv.notify_all()

    def _take(self) -> list[_Job[T, R]] | None:
        """The next batch: wait for one job, linger ``window_s`` for more."""
        with self._cv:
            while not self._jobs and not self._stopped:
                if self._retired:  # idle and replaced: the thread ends, and with it the
                    self._thread = None  # last reference to the model it served
                    return None
                self._cv.wait()
            if self._stopped:
                return None
            deadline = time.monotonic() + self.window_s
            while len(self._jobs) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cv.wait(left):
                    break
            n = min(len(self._jobs), self.max_batch)
            return [self._jobs.popleft() for _ in range(n)]

    def _serve(self) -> None:
        while (batch := self._take()) is not None:
            try:
                results = self._run([j.item for j in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)}")
            except BaseException as e:  # every waiting request learns of it, none hangs
                for j in batch:
                    _post(j.loop, _fail, j.future, e)
                continue
            self.batches += 1
            self.items += len(batch)
            for j, r in zip(batch, results, strict=True):
                if j.then is None:
                    _post(j.loop, _answer, j.future, r)
                    continue
                try:
                    answer = j.then(r)
                except BaseException as e:  # this request's error, not the batch's
                    _post(j.loop, _fail, j.future, e)
                    continue
                _post(j.loop, _answer, j.future, answer)
        with self._cv:  # stopped: nobody waits forever on a job left behind
            if not self._stopped:
                return  # retired while idle: a later submit starts its own thread
            left, self._jobs = list(self._jobs), deque()
        for j in left:
            _post(j.loop, _fail, j.future, RuntimeError("the server is stopping"))


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: its request is gone
        loop.call_soon_threadsafe(fn, *args)


def _answer(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # a client that left cancelled its future
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
