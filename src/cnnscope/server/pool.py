"""The bounded worker pool: work runs off the event loop, and too much work is refused.

A request that would wait behind more than ``queue`` others gets 503 with ``Retry-After``
at once instead of growing a backlog the client has long given up on (TorchServe answers
503 when its job queue is full in the same way). The event loop only parses requests and
hands work over, so ``/api/health`` stays quick however busy the pool is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import HTTPException

__all__ = ["Busy", "WorkerPool"]

T = TypeVar("T")

RETRY_AFTER_S = 1


class Busy(HTTPException):
    """503: every worker is busy and the queue is full; the client should retry later."""

    def __init__(self, pool: str, capacity: int) -> None:
        super().__init__(
            503,
            f"server busy: {pool} pool has {capacity} requests running or queued; "
            f"retry in {RETRY_AFTER_S} s",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


class WorkerPool:
    """``workers`` threads and at most ``queue`` waiting jobs.

    Parameters
    ----------
    name
        Shown in thread names and in the 503 message.
    workers
        Jobs that run at once; typical values are 1–4 (PyTorch already uses every core
        for one forward pass).
    queue
        Jobs that may wait for a worker; more are refused with :class:`Busy`.
    """

    def __init__(self, name: str, workers: int, queue: int) -> None:
        if workers < 1 or queue < 0:
            raise ValueError(f"pool {name!r}: need workers ≥ 1 and queue ≥ 0")
        self.name, self.workers, self.queue = name, workers, queue
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"cnnscope-{name}")
        self._lock = threading.Lock()
        self.pending = 0  # running + waiting

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(*args)``; raise :class:`Busy` when the pool is full."""
        with self._lock:
            if self.pending >= self.capacity:
                raise Busy(self.name, self.capacity)
            self.pending += 1
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._release()
            raise
        # Released when the job ends, not when its client leaves: a job abandoned by a
        # disconnected client still occupies a worker until it finishes.
        future.add_done_callback(lambda _f: self._release())
        return future

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread, awaited from the event loop."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def _release(self) -> None:
        with self._lock:
            self.pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
