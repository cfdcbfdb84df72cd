"""Work the server starts on its own, so that no view waits: the top-examples index.

Top examples need every test digit's activation of the unit: a scan of 10,000 images
(~7 s for deep_mnist) the first time a stage is asked for. When the app starts, one job
on the slow worker pool builds each served model's :class:`~cnnscope.analysis.features.
UnitIndex` (every stage, the default model first) or reads it from the disk cache, keyed
by the weights' fingerprint and the test set. A click that comes before its model's index
is ready waits for that same build, never a second scan; a model no job has reached yet
is built by the click itself, and the background job skips it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

from .._io import atomic_write
from ..analysis.features import UnitIndex, unit_index
from ..models import activation_stage
from ..store import best_effort, units_index_cache
from .state import AppState, ServedModel

__all__ = ["index_of", "start"]


def start(state: AppState) -> None:
    """Queue the index builds of every served model (one slow-pool job, one worker)."""
    if any(m.index_job is None for m in state.models):
        state.slow.submit(_index_all, state)


def _index_all(state: AppState) -> None:
    for m in state.models:
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
    d = state.mnist()  # 503 when the test digits are not on disk
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
