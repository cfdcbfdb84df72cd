"""The server's side of training runs: who may train, runs as served models, live layouts.

:class:`Runs` wraps a :class:`~cnnscope.train.manager.RunManager` for the app:

- **safety**: training from the page is on only when ``serve`` binds a loopback address
  or was given ``--allow-training``; otherwise starting, stopping and resuming answer 403;
- **what trains**: the built-ins, and your own models the server was started with
  (``serve --model net.py:Net``), by their served id; the run trains the spec;
- **models**: each run with a checkpoint is served as ``run:<id>`` (its newest weights,
  reloaded when a new checkpoint lands), so every route (predict, evaluation, features,
  embedding, filters) works with it. A run of your own model is built from its spec (the
  run's settings record it) only when this server was started with that spec too: code is
  imported only where the command line names it, never because a file does;
- **live embedding**: the run's snapshots laid out one frame at a time as they arrive,
  each new frame starting from the last, so the page's scatter grows without jumping.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Unpack

from fastapi import HTTPException

from ..analysis.embedding import Embedder, EmbeddingSeries, class_vectors
from ..analysis.snapshots import load_snapshots
from ..checkpoints import CheckpointError, load_weights, open_model
from ..models import MODELS, Adapted, ForeignModelError, is_foreign_spec
from ..train import runs as run_files
from ..train.manager import InvalidRun, Run, RunConflict, RunManager, RunOptions
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
        # Your own models, as the command line named them (not the runs served later).
        self.own: dict[str, Adapted] = {
            m.id: m.model for m in state.models if isinstance(m.model, Adapted)
        }
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

    # ---- what trains ---------------------------------------------------------------
    def trainable(self) -> list[str]:
        """The model ids a run may train: the built-ins, then your own served models."""
        return [*MODELS, *self.own]

    def start(self, model: str, recipe: str = "fast", **options: Unpack[RunOptions]) -> Run:
        """Start a run of ``model`` (a built-in, or your own model by its served id)."""
        own = self.own.get(model)
        if own is None and model not in MODELS:
            valid = ", ".join(self.trainable())
            raise InvalidRun("model", f"unknown model {model[:80]!r}; valid: {valid}")
        if own is None:
            return self.manager.start(model, recipe, **options)
        h, w = own.input_shape[1:]
        options["normalize"], options["input_size"] = own.normalize, (h, w)
        return self.manager.start(own.spec, recipe, **options)

    def delete(self, run_id: str) -> Run:
        """Delete a run that does not train, and stop serving its checkpoint."""
        with self._sync_lock:  # no sync re-adds it while its folder goes
            run = self.manager.delete(run_id)
            self.state.remove_model(self.model_id(run))
            self._loaded.pop(run.id, None)
            self._layouts.pop(run.id, None)
        return run

    def resume(self, run_id: str) -> Run:
        run = self.manager.get(run_id)
        spec = run.settings["model"]
        if is_foreign_spec(spec) and spec not in self._specs():
            raise RunConflict(
                f"run {run.id} trains your own model {spec}, which this server was not "
                f"started with; restart it with --model {spec} to resume the run"
            )
        return self.manager.resume(run_id)

    def _specs(self) -> set[str]:
        return {m.spec for m in self.own.values()}

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
        s = run.settings
        try:
            if not is_foreign_spec(s["model"]):
                model, meta = load_weights(run.weights)
            elif s["model"] in self._specs():  # your own model: its code, its weights
                size = s.get("input_size")
                model, meta = open_model(
                    s["model"],
                    run.weights,
                    normalize=tuple(s["normalize"]) if s.get("normalize") else None,
                    input_size=(int(size[0]), int(size[1])) if size else None,
                )
            else:
                return  # not imported: this server was not started with that model
        except (CheckpointError, ForeignModelError, OSError, ValueError):
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
            with self._watch_lock:  # decided under the lock watch() takes: a run started
                if not active and not self.manager.active():  # meanwhile is followed
                    self._watcher = None
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
