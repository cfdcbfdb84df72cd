"""Work the server starts on its own, so that no view waits: the top-examples index.

Top examples need every test digit's activation of the unit: a scan of 10,000 images
(~7 s for deep_mnist) the first time a stage is asked for. When the app starts, one
background thread builds each served model's :class:`~cnnscope.analysis.features.
UnitIndex` (every stage, the default model first) or reads it from the disk cache, keyed
by the weights' fingerprint and the test set. The thread runs at a lower CPU priority
(Linux lets one thread be niced), so that the page's first load and the predictions of a
freshly started server come first. A click that comes before its model's index is ready
waits for that same build, never a second scan; a model the thread has not reached yet
is built by the click itself (on the slow pool), and the thread skips it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

from .._io import atomic_write
from ..analysis.features import UnitIndex, unit_index
from ..models import activation_stage
from ..store import best_effort, units_index_cache
from .runs import MODEL_PREFIX
from .state import AppState, ServedModel

__all__ = ["finish", "index_of", "start"]


NICE = 10  # the background thread's niceness: it yields to anything at the default 0


def start(state: AppState) -> threading.Thread | None:
    """Start the thread that indexes every served model, one after the other."""
    if all(m.index_job is not None for m in state.models):
        return None
    thread = threading.Thread(target=_index_all, args=(state,), name="cnnscope-index", daemon=True)
    thread.start()
    return thread


def finish(thread: threading.Thread | None, timeout_s: float = 10.0) -> None:
    """Wait for the thread to give up (after ``AppState.shutdown``: at its next batch of
    images), so that the interpreter never exits under a running forward pass."""
    if thread is not None:
        thread.join(timeout_s)


def _index_all(state: AppState) -> None:
    with contextlib.suppress(AttributeError, OSError):  # per thread on Linux; elsewhere not
        me = threading.get_native_id()
        # Never above the server's own priority: a server started with `nice` keeps it.
        os.setpriority(os.PRIO_PROCESS, me, max(NICE, os.getpriority(os.PRIO_PROCESS, me)))
    for m in state.models:
        # The models the server was started with; a run's checkpoints (many, replaced as
        # it trains) are indexed on their first click instead.
        if m.id.startswith(MODEL_PREFIX):
            continue
        if m.index_job is None and not m.stopping.is_set():
            with contextlib.suppress(Exception):  # the route says what failed, on a click
                index_of(state, m)


def index_of(state: AppState, m: ServedModel) -> UnitIndex:
    """``m``'s index, on a worker thread: built once (or read from disk); every caller
    waits for the same build. A failed build is forgotten, so the next click retries."""
    with m.index_lock:
        job, mine = m.index_job, m.index_job is None
        if job is None:
            job = m.index_job = Future()
    if mine:
        try:
            job.set_result(_load_or_build(state, m))
        except BaseException as e:
            job.set_exception(e)
            with m.index_lock:
                m.index_job = None
    return job.result()


def _load_or_build(state: AppState, m: ServedModel) -> UnitIndex:
    d = state.data_for(m)  # the model's own test set; 503 when it is not on disk
    path = units_index_cache(m.fingerprint, d.checksum)
    stages = sorted({activation_stage(m.model, s) for s in m.stages})
    found = _read(path, stages)
    if found is not None:
        return found
    # Several `serve --workers` processes start together: one builds, the others wait
    # for its file instead of scanning too.
    with _file_lock(path.with_suffix(".lock")):
        found = _read(path, stages)
        if found is not None:
            return found

        def progress(_done: int, _total: int) -> None:
            if m.stopping.is_set():
                raise RuntimeError("the server is stopping")

        index = unit_index(m.snapshot(), d.test_images, stages, progress=progress)
        best_effort(lambda: atomic_write(path, lambda tmp: index.save(tmp)))
    return index


def _read(path: Path, stages: list[str]) -> UnitIndex | None:
    """The cached index when it is readable and covers ``stages``; else ``None``."""
    try:
        index = UnitIndex.load(path)
    except Exception:  # absent, torn or foreign: build again
        return None
    return index if set(stages) <= index.top.keys() else None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (POSIX ``flock``); none where that is missing
    or the cache folder is read-only: at worst two processes build the same index."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a")  # noqa: SIM115 (held until the lock is released)
    except (ImportError, OSError):
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
