"""The server's side of training runs: who may train, runs as served models, live layouts.

:class:`Runs` wraps a :class:`~cnnscope.train.manager.RunManager` for the app:

- **safety**: training from the page is on only when ``serve`` binds a loopback address
  or was given ``--allow-training``; otherwise starting, stopping and resuming answer 403;
- **models**: each run with a checkpoint is served as ``run:<id>`` (its newest weights,
  reloaded when a new checkpoint lands), so every route (predict, evaluation, features,
  embedding, filters) works with it;
- **live embedding**: the run's snapshots laid out one frame at a time as they arrive,
  each new frame starting from the last, so the page's scatter grows without jumping.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException

from ..analysis.embedding import Embedder, EmbeddingSeries, class_vectors
from ..analysis.snapshots import load_snapshots
from ..checkpoints import CheckpointError, load_weights
from ..train import runs as run_files
from ..train.manager import Run, RunManager
from .state import AppState, ServedModel

__all__ = ["MODEL_PREFIX", "Runs"]

MODEL_PREFIX = "run:"  # a run's model id: run:<run id>
WATCH_S = 1.0  # how often a training run's folder is checked for a new checkpoint


@dataclass
class _Layout:
    """One run's live layouts: the series so far and its JSON."""

    series: EmbeddingSeries | None = None
    body: bytes | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Runs:
    """Training runs for the app (``app.state.runs``).

    Parameters
    ----------
    state
        The app's state: run checkpoints are added to its models.
    folder
        The runs folder.
    training
        Whether the page may start, stop and resume runs.
    why_off
        Said in the 403 when ``training`` is false.
    """

    def __init__(
        self,
        state: AppState,
        folder: Path,
        *,
        training: bool,
        why_off: str = "",
        data_dir: str | None = None,
    ) -> None:
        self.state = state
        self.manager = RunManager(folder, data_dir=data_dir)
        self.training, self.why_off = training, why_off
        self._loaded: dict[str, float] = {}  # run id → mtime of the weights served
        self._layouts: dict[str, _Layout] = {}
        self._watcher: threading.Thread | None = None
        self._watch_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self.sync()
        if self.manager.active():  # runs a previous server left training
            self.watch()

    def require_training(self) -> None:
        if not self.training:
            raise HTTPException(403, f"training from the page is off: {self.why_off}")

    @staticmethod
    def model_id(run: Run) -> str:
        return MODEL_PREFIX + run.id

    # ---- checkpoints as served models ------------------------------------------
    def sync(self) -> None:
        """Serve each run's newest checkpoint (loading only those that changed)."""
        with self._sync_lock:
            for run in self.manager.runs():
                self._sync(run)

    def _sync(self, run: Run) -> None:
        try:
            mtime = run.weights.stat().st_mtime
        except OSError:
            return
        if self._loaded.get(run.id) == mtime:
            return
        try:
            model, meta = load_weights(run.weights)
        except (CheckpointError, OSError, ValueError):
            return  # caught between the weights and their sidecar: the next sync
        self.state.add_model(ServedModel(self.model_id(run), model, meta, str(run.weights)))
        self._loaded[run.id] = mtime

    def watch(self) -> None:
        """Follow training runs for new checkpoints until none trains (a daemon thread)."""
        with self._watch_lock:
            if self._watcher is not None and self._watcher.is_alive():
                return
            self._watcher = threading.Thread(target=self._watch, name="cnnscope-runs", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        closed = self.manager.closed
        while not closed.wait(WATCH_S):
            active = self.manager.active()
            self.sync()
            if not active:
                return

    def close(self) -> None:
        self.manager.close()
        self.sync()

    # ---- live layouts ----------------------------------------------------------------
    def layouts(self, run: Run) -> bytes:
        """The run's snapshot layouts so far (the Embedding schema's JSON); new snapshots
        are laid out after the frames already made (a worker thread: seconds each)."""
        layout = self._layouts.setdefault(run.id, _Layout())
        folder = run.folder / run_files.SNAPSHOTS
        with layout.lock:
            try:
                snaps = load_snapshots(folder)
            except FileNotFoundError as e:
                raise HTTPException(404, f"run {run.id} has no snapshots yet: {e}") from e
            except (ValueError, OSError) as e:
                raise HTTPException(422, str(e)) from e
            series = layout.series
            if series is not None and series.steps and series.steps[-1] == snaps.steps[-1]:
                assert layout.body is not None
                return layout.body
            if series is not None and list(snaps.indices) != list(series.indices):
                series = None  # another subset: lay out from scratch
            layout.series = Embedder("tsne", "fc1").extend(series, snaps)
            payload = layout.series.as_dict()
            served = self.state.by_id.get(self.model_id(run))  # None before a checkpoint
            payload["classes"] = class_vectors(snaps, None if served is None else served.model)
            layout.body = json.dumps(payload).encode()
            return layout.body
