"""Training runs managed for the server: a folder each, trained by ``cnnscope train`` in a
process of its own, listed, followed, stopped and resumed.

A runs folder holds one folder per run, each exactly what ``cnnscope train --run-dir``
writes (weights, state, metrics.jsonl, snapshots; see :mod:`.runs`) plus two files of
the manager's::

    RUNS/<id>/
      run.json     the request (model, recipe, steps, seed), the command, the process id
      train.log    the process's output (the last line is the error when it fails)

A run trains in a child process (``python -m cnnscope train … --resume``) with one torch
thread and a lower priority, so the server's own work (a drawing's prediction) is not
slowed much; it dies with the server (Linux: the parent-death signal). Its status is read
from its folder and its process, never stored: ``queued`` (started, no step yet),
``running``, ``stopped`` (gone with a checkpoint: resumable), ``done``, ``failed`` (gone
without a checkpoint). A server restarted on the same folder therefore lists every run
as it is.

Progress is followed by tailing the folder (:class:`Tail`): new metrics lines, snapshots
and checkpoints become events, as the page's Server-Sent Events carry them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

from .._io import atomic_write_text
from ..data import VALIDATION_SIZE
from . import runs
from .config import MAX_EPOCHS, RECIPES, TrainConfig

__all__ = [
    "MAX_STEPS",
    "STATUSES",
    "InvalidRun",
    "Run",
    "RunConflict",
    "RunManager",
    "RunOptions",
    "Tail",
    "UnknownRun",
]

STATUSES = ("queued", "running", "stopped", "done", "failed")
MAX_STEPS = 50_000  # 2.5× the "seed" recipe; beyond it a page run would take days on a CPU
TRAIN_IMAGES = 60_000 - VALIDATION_SIZE  # MNIST's, less validation: when no training set is here
RUN_FILE = "run.json"
LOG_FILE = "train.log"
EXIT_FILE = "exit.json"  # why the run's last process ended badly, when it did
# Page runs: a metrics line every LOG_EVERY steps (the live curve), a checkpoint (validation
# point, weights for the filter strip and the model picker, resumable state) every
# CHECKPOINT_EVERY, fc1/logits of SNAPSHOT_SIZE test digits at the loop's snapshot steps.
LOG_EVERY = 10
CHECKPOINT_EVERY = 100
SNAPSHOT_SIZE = 1000  # half the CLI's 2,000: a live t-SNE frame in about a second
STOP_WAIT_S = 10.0
_ID = re.compile(r"^[a-z0-9_]+-\d{8}-\d{6}(-\d+)?$")


class RunOptions(TypedDict, total=False):
    """What a request may set beside the model and recipe; each is checked by
    :meth:`RunManager.resolve`. ``normalize`` and ``input_size`` are your own model's only."""

    steps: int | None  # total optimizer steps (else the recipe's length, or epochs)
    epochs: float | None  # passes over the training set (not with steps)
    seed: int
    normalize: tuple[float, float] | None
    input_size: tuple[int, int] | None


class InvalidRun(ValueError):
    """A request the manager refuses; ``field`` names the request field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class RunConflict(RuntimeError):
    """The request cannot be done in the run's (or the manager's) present state."""


class UnknownRun(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class Run:
    """One run folder and what ``run.json`` says about it."""

    id: str
    folder: Path
    # model, recipe, steps, seed (as requested, steps resolved); for your own model (a
    # path/net.py:Net spec) also its normalize and input_size
    settings: dict[str, Any]
    created: str
    pid: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    launched: float = 0.0  # time.time() of the last launch by this manager

    @property
    def config(self) -> TrainConfig:
        return _config(self.settings, self.folder)

    @property
    def weights(self) -> Path:
        return self.folder / runs.WEIGHTS

    @property
    def total_steps(self) -> int:
        return int(self.settings["steps"])


def _config(settings: dict[str, Any], folder: Path) -> TrainConfig:
    return TrainConfig.from_recipe(
        settings["recipe"],
        model=settings["model"],
        steps=settings["steps"],
        seed=settings["seed"],
        run_dir=str(folder),
        log_every=LOG_EVERY,
        checkpoint_every=CHECKPOINT_EVERY,
        snapshot_size=SNAPSHOT_SIZE,
        **({"data_dir": settings["data_dir"]} if settings.get("data_dir") else {}),
    )


def read_records(folder: Path) -> list[dict[str, Any]]:
    """The whole metrics records of a run folder (a torn last line is skipped)."""
    path = folder / runs.METRICS
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            out.append(record)
    return out


def checkpoint_meta(folder: Path) -> dict[str, Any] | None:
    """The metadata of the run's latest weights (``model.json``), or None before any."""
    try:
        meta = json.loads((folder / runs.WEIGHTS).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and (folder / runs.WEIGHTS).exists() else None


def _alive(pid: int, folder: Path) -> bool:
    """Whether ``pid`` is a training process of ``folder`` (not a reused process id)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            return False
        return str(folder).encode() in args
    return True


def _id_prefix(model: str) -> str:
    """A run id's first part: the built-in's name, or your model's class name in lower case
    (``path/net.py:Net`` → ``net``)."""
    name = model.rpartition(":")[2].lower()
    return re.sub(r"[^a-z0-9_]+", "_", name).strip("_") or "model"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """In the child: a lower priority, and SIGTERM (save, exit) when the server dies."""
    with contextlib.suppress(OSError):
        os.nice(10)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class RunManager:
    """The runs of one folder; at most ``max_running`` train at a time.

    Parameters
    ----------
    folder
        The runs folder (``store.runs_dir()`` by default in ``serve``); made if missing.
    max_running
        Runs training at once; a start beyond it raises :class:`RunConflict`. One is right
        for a laptop: two trainings share the cores and each takes twice as long.
    data_dir
        Passed to ``cnnscope train --data-dir``.
    """

    def __init__(self, folder: Path, *, max_running: int = 1, data_dir: str | None = None) -> None:
        self.folder = Path(folder).absolute()  # as in the commands: a restart finds them
        self.max_running = max_running
        self.data_dir = data_dir
        self._lock = threading.RLock()
        self._runs: dict[str, Run] = {}
        self.closed = threading.Event()
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="cnnscope-spawn")
        self._train_images: int | None = None
        self.scan()

    def train_images(self) -> int:
        """How many images a run trains on (the data set's training split, validation held
        out), read once: what "epochs" means for the page's runs."""
        if self._train_images is None:
            from ..data import DataError, load_data

            try:
                self._train_images = len(load_data(self.data_dir).train_images)
            except DataError:  # no training set here: the run itself will say so
                self._train_images = TRAIN_IMAGES
        return self._train_images

    # ---- the folder ------------------------------------------------------------
    def scan(self) -> list[Run]:
        """Read the runs already in the folder (a run.json each); damaged ones are skipped."""
        with self._lock:
            if self.folder.is_dir():
                for path in sorted(self.folder.glob(f"*/{RUN_FILE}")):
                    run_id = path.parent.name
                    if run_id in self._runs or not _ID.match(run_id):
                        continue
                    try:
                        record = json.loads(path.read_text())
                        run = Run(
                            run_id,
                            path.parent,
                            dict(record["settings"]),
                            str(record["created"]),
                            record.get("pid"),
                        )
                        run.config.validate()
                    except (OSError, ValueError, KeyError, TypeError):
                        continue
                    self._runs[run_id] = run
            return list(self._runs.values())

    def runs(self) -> list[Run]:
        self.scan()  # runs another server started in the same folder appear too
        with self._lock:
            return sorted(self._runs.values(), key=lambda r: r.created + r.id)

    def get(self, run_id: str) -> Run:
        with self._lock:
            if run_id not in self._runs:
                known = ", ".join(self._runs) or "none yet"
                raise UnknownRun(f"unknown run {run_id[:80]!r}; runs: {known}")
            return self._runs[run_id]

    # ---- status ----------------------------------------------------------------
    def status(self, run: Run) -> str:
        if self._running(run):
            metrics = run.folder / runs.METRICS
            started = metrics.exists() and metrics.stat().st_mtime >= run.launched - 1
            return "running" if started or not run.launched else "queued"
        meta = checkpoint_meta(run.folder)
        if meta is not None and meta.get("complete"):
            return "done"
        return "stopped" if (run.folder / runs.STATE).exists() else "failed"

    def _running(self, run: Run) -> bool:
        if run.process is not None:
            return run.process.poll() is None
        return run.pid is not None and _alive(run.pid, run.folder)

    def error(self, run: Run) -> str | None:
        """Why a run's process ended badly: the last line of its log, or None. A crash
        (killed, out of memory) is written to the run's folder once seen, so a restarted
        server still says why a run stopped."""
        if self._running(run) or self.status(run) == "done":
            return None
        code = run.process.returncode if run.process is not None else None
        if code in (None, 0, 130, -signal.SIGTERM):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                said = json.loads((run.folder / EXIT_FILE).read_text()).get("error")
                if (
                    isinstance(said, str)
                    and said
                    and run.launched <= (run.folder / EXIT_FILE).stat().st_mtime
                ):
                    return said
            return None if self.status(run) != "failed" else self._last_log_line(run)
        said = self._last_log_line(run) or f"training exited with status {code}"
        if code is not None and code < 0:  # a signal: the log's last line is not why
            said = f"training was killed (signal {-code}) after: {said}"
        with contextlib.suppress(OSError):
            atomic_write_text(run.folder / EXIT_FILE, json.dumps({"error": said, "code": code}))
        return said

    def _last_log_line(self, run: Run) -> str | None:
        try:
            lines = (run.folder / LOG_FILE).read_text(errors="replace").strip().splitlines()
        except OSError:
            return None
        return lines[-1][-500:] if lines else None

    def step(self, run: Run) -> int:
        """The last step with metrics (train lines come every LOG_EVERY steps)."""
        records = read_records(run.folder)
        return max((r["step"] for r in records), default=0)

    def active(self) -> list[Run]:
        with self._lock:
            return [r for r in self._runs.values() if self._running(r)]

    # ---- start, stop, resume -----------------------------------------------------
    def start(self, model: str, recipe: str = "fast", **options: Unpack[RunOptions]) -> Run:
        """Create a run folder and start training it; see :meth:`resolve` for the checks.

        ``model`` is a built-in's name or your own model's spec (``path/net.py:Net``: the
        caller vouches for the code it names; the server passes only the models it was
        started with), with its ``normalize`` and ``input_size`` as ``--model`` takes them.
        """
        settings = self.resolve(model, recipe, **options)
        with self._lock:
            self._check_capacity()
            run_id = self._new_id(_id_prefix(model))
            run = Run(
                run_id,
                self.folder / run_id,
                settings,
                _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            )
            run.folder.mkdir(parents=True)
            self._runs[run_id] = run
            self._launch(run)
            return run

    def resolve(
        self, model: str, recipe: str = "fast", **options: Unpack[RunOptions]
    ) -> dict[str, Any]:
        """A run's settings from a request, steps resolved; :class:`InvalidRun` names the
        field at fault (unknown model or recipe, steps ≤ 0 or beyond :data:`MAX_STEPS`)."""
        from ..models import MODELS, is_foreign_spec

        steps, epochs, seed = options.get("steps"), options.get("epochs"), options.get("seed", 0)
        normalize, input_size = options.get("normalize"), options.get("input_size")
        own = is_foreign_spec(model)
        if not own and model not in MODELS:
            raise InvalidRun("model", f"unknown model {model[:80]!r}; valid: {', '.join(MODELS)}")
        if not own and (normalize is not None or input_size is not None):
            raise InvalidRun("model", f"{model} is a built-in: it takes no normalize or input size")
        if recipe not in RECIPES:
            raise InvalidRun(
                "recipe", f"unknown recipe {recipe[:80]!r}; valid: {', '.join(RECIPES)}"
            )
        if steps is not None and epochs is not None:
            raise InvalidRun("steps", "give steps or epochs, not both")
        if seed < 0:
            raise InvalidRun("seed", "must be ≥ 0")
        base = TrainConfig.from_recipe(recipe)
        if steps is None:
            if epochs is not None and not 0 < epochs <= MAX_EPOCHS:
                raise InvalidRun("epochs", f"must be in (0, {MAX_EPOCHS:,}], not {epochs}")
            field_ = "recipe" if base.steps and epochs is None else "epochs"
            length = base if epochs is None else dataclasses.replace(base, epochs=epochs, steps=0)
            total = length.total_steps(self.train_images())  # as the run's own loop counts
        else:
            field_, total = "steps", steps
        if total < 1:
            raise InvalidRun(field_, f"{total} steps; a run needs at least 1")
        if total > MAX_STEPS:
            raise InvalidRun(field_, f"{total} steps is more than the {MAX_STEPS:,} a run may take")
        settings: dict[str, Any] = {
            "model": model, "recipe": recipe, "steps": int(total), "seed": int(seed),
        }  # fmt: skip
        if own:
            settings["normalize"] = None if normalize is None else [float(v) for v in normalize]
            settings["input_size"] = None if input_size is None else [int(v) for v in input_size]
        if self.data_dir:
            settings["data_dir"] = self.data_dir
        return settings

    def stop(self, run_id: str, wait: bool = True) -> Run:
        """SIGTERM the run: it saves its last whole step and exits (then ``stopped``)."""
        run = self.get(run_id)
        with self._lock:
            if not self._running(run):
                raise RunConflict(
                    f"run {run.id} is {self.status(run)}, not training: nothing to stop"
                )
            pid = run.process.pid if run.process is not None else run.pid
            assert pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if wait:
            self._wait(run, STOP_WAIT_S)
        return run

    def resume(self, run_id: str) -> Run:
        """Train a stopped (or failed) run on from its last checkpoint."""
        run = self.get(run_id)
        with self._lock:
            status = self.status(run)
            if status in ("queued", "running"):
                raise RunConflict(f"run {run.id} is {status} already")
            if status == "done":
                raise RunConflict(f"run {run.id} is done: all {run.total_steps} steps trained")
            self._check_capacity()
            self._launch(run)
            return run

    def delete(self, run_id: str) -> Run:
        """Remove a run that does not train: its folder (weights, metrics, snapshots, the
        TensorBoard log) is deleted. A queued or running run is refused: stop it first."""
        run = self.get(run_id)
        with self._lock:
            status = self.status(run)
            if status in ("queued", "running"):
                raise RunConflict(f"run {run.id} is {status}: stop it before deleting it")
            if run.folder.parent.resolve() != self.folder.resolve():  # never outside the folder
                raise RunConflict(f"run {run.id} is not in {self.folder}")
            shutil.rmtree(run.folder, ignore_errors=True)
            if run.folder.exists():
                raise RunConflict(f"run {run.id}: {run.folder} could not be removed completely")
            del self._runs[run.id]
            return run

    def _check_capacity(self) -> None:
        self.scan()  # a run another server started in this folder counts too
        busy = self.active()
        if self.closed.is_set():
            raise RunConflict("the server is shutting down")
        if len(busy) >= self.max_running:
            raise RunConflict(
                f"{', '.join(r.id for r in busy)} is training; one run trains at a time "
                "(stop it first, or wait for it to finish)"
            )

    def _new_id(self, model: str) -> str:
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
        run_id, n = f"{model}-{stamp}", 1
        while run_id in self._runs or (self.folder / run_id).exists():
            n += 1
            run_id = f"{model}-{stamp}-{n}"
        return run_id

    def command(self, run: Run) -> list[str]:
        """The ``cnnscope train`` command line of ``run`` (always --resume: a first launch
        finds no state and starts from step 0)."""
        c = run.config
        args = [
            sys.executable, "-m", "cnnscope", "train",
            "--model", c.model, "--recipe", c.recipe, "--steps", str(c.steps),
            "--seed", str(c.seed), "--run-dir", str(run.folder),
            "--log-every", str(c.log_every), "--checkpoint-every", str(c.checkpoint_every),
            "--snapshot-size", str(c.snapshot_size), "--resume", "--json",
        ]  # fmt: skip
        s = run.settings
        if s.get("normalize"):
            args += ["--normalize", ",".join(repr(float(v)) for v in s["normalize"])]
        if s.get("input_size"):
            args += ["--input-size", ",".join(str(int(v)) for v in s["input_size"])]
        if c.data_dir:
            args += ["--data-dir", c.data_dir]
        return args

    def _launch(self, run: Run) -> None:
        (run.folder / EXIT_FILE).unlink(missing_ok=True)  # a new process: the old end is past
        # One torch thread: the other core stays with the server, drawing stays quick.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with open(run.folder / LOG_FILE, "ab") as log:
            # From the manager's own thread: the parent-death signal fires when the thread
            # that started the child ends, and a request's thread may end any time.
            run.process = self._spawner.submit(
                subprocess.Popen,
                self.command(run),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
            ).result()
        run.pid, run.launched = run.process.pid, time.time()
        record = {
            "id": run.id,
            "settings": run.settings,
            "created": run.created,
            "pid": run.pid,
            "command": self.command(run),
        }
        atomic_write_text(run.folder / RUN_FILE, json.dumps(record, indent=2) + "\n")

    def _wait(self, run: Run, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._running(run) and time.monotonic() < deadline:
            if run.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    run.process.wait(timeout=0.1)
            else:
                time.sleep(0.1)

    def close(self) -> None:
        """Server shutdown: event streams end, running runs save their step and stop."""
        self.closed.set()
        # Only the runs this server launched: a run another server (or a --workers sibling)
        # trains from the same folder is none of this one's business.
        own = [r for r in self.active() if r.process is not None]
        for run in own:
            with contextlib.suppress(RunConflict, ProcessLookupError):
                self.stop(run.id, wait=False)
        for run in own:
            self._wait(run, STOP_WAIT_S)


@dataclass
class _Seen:
    records: set[tuple[str, int]] = field(default_factory=set)
    snapshots: set[int] = field(default_factory=set)
    checkpoint: float = 0.0
    status: str = ""
    step: int = -1


class Tail:
    """Follows one run's folder; :meth:`poll` returns the events since the last call.

    Events (name, data): ``metrics`` (each new metrics record), ``progress`` (status,
    step, total steps, steps/s, images/s, seconds left), ``snapshot`` (a new
    representation snapshot), ``checkpoint`` (new weights), ``done`` (the final figures),
    ``error`` (why it failed). The first poll replays what the folder already holds.
    """

    def __init__(self, manager: RunManager, run: Run) -> None:
        self.manager, self.run = manager, run
        self._seen = _Seen()
        self.finished = False  # a terminal status was reported

    def poll(self) -> list[tuple[str, dict[str, Any]]]:
        run, seen = self.run, self._seen
        events: list[tuple[str, dict[str, Any]]] = []
        status = self.manager.status(run)  # before the files: nothing written is missed
        records = read_records(run.folder)
        for r in records:
            key = (str(r.get("split")), r["step"])
            if key not in seen.records:
                seen.records.add(key)
                events.append(("metrics", r))
        for entry in _snapshot_entries(run.folder):
            if entry["step"] not in seen.snapshots:
                seen.snapshots.add(entry["step"])
                events.append(("snapshot", entry))
        with contextlib.suppress(OSError):
            mtime = run.weights.stat().st_mtime
            meta = checkpoint_meta(run.folder)
            if mtime != seen.checkpoint and meta is not None:
                seen.checkpoint = mtime
                steps = meta.get("metrics", {}).get("steps")
                events.append(("checkpoint", {"step": steps, "complete": meta.get("complete")}))
        step = max((r["step"] for r in records), default=0)
        if status != seen.status or step != seen.step:
            seen.status, seen.step = status, step
            events.append(("progress", progress(run, status, records)))
        if status == "done" and not self.finished:
            meta = checkpoint_meta(run.folder) or {}
            events.append(("done", {"metrics": meta.get("metrics", {})}))
        if status in ("failed", "stopped") and not self.finished:
            # A crash after a checkpoint leaves a resumable run ("stopped"): still an error.
            message = self.manager.error(run)
            if status == "failed" or message:
                events.append(("error", {"message": message or "training failed"}))
        self.finished = status in ("done", "failed", "stopped")
        return events


def _snapshot_entries(folder: Path) -> list[dict[str, Any]]:
    try:
        index = json.loads((folder / runs.SNAPSHOTS / "index.json").read_text())
        return [e for e in index["snapshots"] if isinstance(e.get("step"), int)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def progress(run: Run, status: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Status, step and speed of ``run`` from its metrics records."""
    train = [r for r in records if r.get("split") == "train"]
    step = max((r["step"] for r in records), default=0)
    rate = None
    if len(train) >= 2:
        a, b = train[-2], train[-1]
        dt = float(b.get("seconds", 0)) - float(a.get("seconds", 0))
        if dt > 0 and b["step"] > a["step"]:  # both from one launch (seconds restart)
            rate = (b["step"] - a["step"]) / dt
    total = run.total_steps
    batch = run.config.batch_size
    return {
        "status": status,
        "step": step,
        "total_steps": total,
        "steps_per_s": None if rate is None else round(rate, 2),
        "images_per_s": None if rate is None else round(rate * batch),
        "seconds_left": None
        if rate is None or status != "running"
        else round((total - step) / rate, 1),
    }
