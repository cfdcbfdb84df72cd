"""The training loop: ``fit(config, callbacks)`` as named steps.

:class:`_Run` holds one run's pieces and does one thing per method: ``prepare`` (data,
model, optimizer, resume), ``step`` (one optimizer step), ``log_window`` (train metrics),
``validate`` (validation + checkpoint), ``snapshot`` and ``finish`` (final figures).
Callbacks see a :class:`TrainState`: the one progress type of the CLI, the server and
benchmarks.

The loop is deterministic given the seed: each epoch's shuffle is drawn from a generator
seeded by (seed, epoch), and dropout's RNG is saved with the state, so a resumed run ends
exactly where an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..analysis.evaluation import evaluate
from ..analysis.snapshots import SnapshotWriter, snapshot_subset
from ..checkpoints import load_training_state, save_training_state, save_weights
from ..data import MNIST, DataError, load_mnist, to_float
from ..devices import fused_step_runs, native_bf16
from ..models import StagedModel, build_model, num_classes
from . import runs
from .augment import random_affine
from .config import TrainConfig

__all__ = ["Callback", "TrainResult", "TrainState", "fit"]


@dataclass
class TrainState:
    """What callbacks see. Set ``stop = True`` to end training after the current step."""

    model: StagedModel
    config: TrainConfig
    step: int  # optimizer steps done
    total_steps: int
    steps_per_epoch: int
    logs: dict[str, float] = field(default_factory=dict)
    stop: bool = False

    @property
    def epoch(self) -> float:
        return self.step / self.steps_per_epoch


class Callback:
    """Hooks into :func:`fit`; override what you need. All default to doing nothing."""

    def on_train_begin(self, state: TrainState) -> None: ...

    def on_step_end(self, state: TrainState) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...


@dataclass
class TrainResult:
    """What :func:`fit` returns."""

    model: StagedModel
    run_dir: Path
    weights: Path  # RUN/model.safetensors
    metrics: dict[str, Any]  # final validation/test figures
    steps: int
    seconds: float  # wall time of the training loop (this invocation)


def _build_optimizer(
    config: TrainConfig, model: StagedModel, total_steps: int, device: torch.device
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    kind: Callable[..., torch.optim.Optimizer]
    options: dict[str, Any] = {"lr": config.lr}
    if config.optimizer == "adam":
        kind = torch.optim.Adam
    elif config.optimizer == "adamw":
        kind, options["weight_decay"] = torch.optim.AdamW, config.weight_decay
    else:
        kind = torch.optim.SGD
        options.update(momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    # Fused: one pass over each parameter's memory per step instead of one per operation
    # (Adam's are ~8). deep_mnist's 3.3 M parameters made the unfused AdamW 45 % of a
    # batch-50 step; fused, the step trains 1.6× the images/s (bench/train_profile.py).
    if fused_step_runs(kind, device.type):
        options["fused"] = True
    opt = kind(model.parameters(), **options)
    sched: torch.optim.lr_scheduler.LRScheduler
    if config.schedule == "onecycle":
        # Short warm-up (15 %) then cosine decay to lr/1e4: the fastest route to a good
        # minimum in a few epochs (Smith & Topin, "super-convergence").
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=config.lr, total_steps=total_steps, pct_start=0.15
        )
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _step: 1.0)
    return opt, sched


class _Run:
    """One training run's pieces; each method is one named step of :func:`fit`."""

    def __init__(
        self,
        config: TrainConfig,
        data: MNIST,
        resume: bool,
        model: StagedModel | None = None,
        device: torch.device | None = None,
    ) -> None:
        """prepare: data in memory, the model, its optimizer and, if resuming, its state."""
        config.validate()
        self.config, self.data = config, data
        self.run_dir = Path(config.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not len(data.train_images):
            raise DataError(
                f"{data.source}: no training images (it holds only a test set). Training "
                "needs a training split: pass --data-dir with the four IDX files or an .npz."
            )
        images, self.labels = data.train_images, data.train_labels
        if config.train_limit:
            images, self.labels = images[: config.train_limit], self.labels[: config.train_limit]
        # (N, 28, 28) uint8 in memory, a quarter of float32's bytes (43 MB for MNIST); each
        # batch is converted as it is drawn, to the same floats.
        self.train_x = images
        self.n = len(self.train_x)
        self.batch_size = min(config.batch_size, self.n)
        steps_per_epoch = self.n // self.batch_size
        total_steps = config.total_steps(self.n)

        torch.manual_seed(config.seed)
        overrides: dict[str, object] = {} if config.dropout is None else {"dropout": config.dropout}
        if model is None:  # else: your own model (or starting weights), built by the caller
            overrides["num_classes"] = data.num_classes  # one output per class of the data
            model = build_model(config.model, **overrides)
        if data.image_size != tuple(model.input_shape[1:]):
            raise DataError(
                f"{data.source}: images are {data.image_size[0]}×{data.image_size[1]} but "
                f"the model takes {model.input_shape[1]}×{model.input_shape[2]}; resize the "
                "images or train a model of your own that takes them."
            )
        if (k := num_classes(model)) != data.num_classes:
            raise DataError(
                f"{data.source}: {data.num_classes} classes but the model has {k} outputs; "
                "give it one output per class."
            )
        model.train()
        self.device = device or torch.device("cpu")
        model = model.to(self.device)  # before the optimizer: its state follows the params
        if config.precision == "auto":  # the run, its state and its weights say which ran
            precision = "bf16" if native_bf16(self.device) else "fp32"
            config = self.config = dataclasses.replace(config, precision=precision)
        self.memory_format = (
            torch.channels_last if config.channels_last else torch.contiguous_format
        )
        model = model.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.optimizer, self.scheduler = _build_optimizer(config, model, total_steps, self.device)

        self.state_path = self.run_dir / runs.STATE
        start_step = 0
        if resume and self.state_path.exists():
            info = load_training_state(self.state_path, model, self.optimizer)
            runs.check_resumable(self.state_path, info["config"], config)
            self.scheduler.load_state_dict(info["scheduler"])
            start_step = int(info["step"])

        subset = snapshot_subset(len(data.test_images), config.snapshot_size)
        self.snapshots = SnapshotWriter(
            self.run_dir / runs.SNAPSHOTS, subset, data.test_images, data.test_labels
        )
        self.log = runs.MetricsLog(self.run_dir, start_step, model, graph=start_step == 0)
        self.state = TrainState(model, config, start_step, total_steps, steps_per_epoch)
        self.last_val: dict[str, Any] | None = None  # this invocation's last validation
        self.snapshot_at = set(config.snapshot_steps) if config.snapshot_size else set()
        self.t0 = time.perf_counter()
        self.window_loss = self.window_correct = self.window_seen = 0.0
        self.perm = torch.empty(0, dtype=torch.long)
        self.perm_epoch = -1

    @property
    def model(self) -> StagedModel:
        return self.state.model

    def save_state(self) -> None:
        """The last completed step: model, optimizer, RNG and loop position."""
        info = {
            "step": self.state.step,
            # torch < 2.4's OneCycleLR keeps its annealing function in its state: a
            # callable is rebuilt by the constructor, never saved.
            "scheduler": {k: v for k, v in self.scheduler.state_dict().items() if not callable(v)},
            "config": dataclasses.asdict(self.config),
        }
        save_training_state(self.state_path, self.model, self.optimizer, info)

    def snapshot_due(self) -> bool:
        step, cfg = self.state.step, self.config
        return bool(cfg.snapshot_size) and (
            step in self.snapshot_at or step % self.state.steps_per_epoch == 0
        )

    def snapshot(self) -> None:
        self.snapshots.write(self.model, self.state.step, self.state.epoch)

    def step(self) -> None:
        """One optimizer step on the next batch of the epoch's seeded shuffle."""
        epoch, i = divmod(self.state.step, self.state.steps_per_epoch)
        if epoch != self.perm_epoch:
            g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
            self.perm, self.perm_epoch = torch.randperm(self.n, generator=g), epoch
        idx = self.perm[i * self.batch_size : (i + 1) * self.batch_size]
        x = to_float(self.train_x[idx]).to(self.device)  # (B, 1, H, W) float32
        if self.config.augment:  # seeded by (seed, step): a resumed run sees the same images
            seed = self.config.seed * 1_000_003 + 500_000 + self.state.step
            x = random_affine(x, torch.Generator().manual_seed(seed))
        x = x.contiguous(memory_format=self.memory_format)
        y = self.labels[idx].to(self.device)

        # bf16: the forward pass and the loss under autocast (convolutions and matmuls in
        # bfloat16, the weights and their gradients float32); validation stays float32.
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"
        ):
            logits = self.model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.state.step += 1

        loss_value = float(loss.detach())
        self.window_loss += loss_value * len(y)
        self.window_correct += float((logits.argmax(1) == y).sum())
        self.window_seen += len(y)
        self.state.logs.update(loss=loss_value, lr=float(self.scheduler.get_last_lr()[0]))

    def log_window(self) -> None:
        """Train metrics over the steps since the last line, every ``log_every`` steps."""
        state = self.state
        if state.step % self.config.log_every and state.step != state.total_steps:
            return
        accuracy = self.window_correct / self.window_seen
        state.logs["accuracy"] = accuracy
        self.log.write(
            {
                "step": state.step,
                "epoch": round(state.epoch, 4),
                "split": "train",
                "cross_entropy": self.window_loss / self.window_seen,
                "accuracy": accuracy,
                "lr": state.logs["lr"],
                "seconds": round(time.perf_counter() - self.t0, 3),
            }
        )
        self.window_loss = self.window_correct = self.window_seen = 0.0

    def validate(self, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """Validation figures, logged; then the weights and the state are checkpointed."""
        val = evaluate(self.model, self.data.validation_images, self.data.validation_labels)
        record = {
            "step": self.state.step,
            "epoch": round(self.state.epoch, 4),
            "split": "validation",
            "accuracy": val.accuracy,
            "cross_entropy": val.cross_entropy,
        }
        self.log.write(record, prefix="validation/")
        save_weights(
            self.model,
            self.run_dir / runs.WEIGHTS,
            runs.metadata(self.config, self.data, record, metrics),
        )
        self.save_state()
        self.last_val = record
        return record

    def save_stopped(self) -> None:
        """A stop (Ctrl-C, SIGTERM) between checkpoints: the state, so ``--resume`` goes on
        from the last completed step, and the weights as they are at that step, so a
        stopped run is seen as it was when stopped, not at its last checkpoint."""
        self.save_state()
        metrics: dict[str, Any] = {"steps": self.state.step, "stopped": True}
        if self.last_val is not None:  # the latest figures, with the step they are of
            metrics.update(
                validation_accuracy=self.last_val["accuracy"],
                validation_step=self.last_val["step"],
            )
        save_weights(
            self.model,
            self.run_dir / runs.WEIGHTS,
            runs.metadata(self.config, self.data, None, metrics, complete=False),
        )

    def finish(self, seconds: float) -> TrainResult:
        """Final snapshot, validation and test figures; the weights with their metrics."""
        state = self.state
        if self.config.snapshot_size:
            self.snapshot()
        final_val = self.validate()
        test = evaluate(self.model, self.data.test_images, self.data.test_labels)
        self.log.write(
            {
                "step": state.step,
                "epoch": round(state.epoch, 4),
                "split": "test",
                "accuracy": test.accuracy,
                "cross_entropy": test.cross_entropy,
            },
            prefix="test/",
        )
        self.log.close()
        metrics = {
            "validation_accuracy": final_val["accuracy"],
            "test_accuracy": test.accuracy,
            "test_cross_entropy": test.cross_entropy,
            "test_per_class_accuracy": test.per_class_accuracy,
            "steps": state.step,
            "train_seconds": round(seconds, 2),
        }
        weights = save_weights(
            self.model,
            self.run_dir / runs.WEIGHTS,
            runs.metadata(self.config, self.data, final_val, metrics),
        )
        self.model.eval().cpu()
        return TrainResult(self.model, self.run_dir, weights, metrics, state.step, seconds)


def fit(
    config: TrainConfig,
    callbacks: Sequence[Callback] = (),
    *,
    resume: bool = False,
    data: MNIST | None = None,
    model: StagedModel | None = None,
    device: torch.device | None = None,
) -> TrainResult:
    """Train a model as ``config`` says; write checkpoints, metrics and snapshots.

    Parameters
    ----------
    config
        The run's settings; ``config.run_dir`` receives its files.
    callbacks
        Progress, early stopping, benchmarks: see :class:`Callback`.
    resume
        Continue from ``RUN/state.safetensors`` if it exists (same config required); the
        result equals an uninterrupted run's.
    data
        Already loaded data; by default :func:`cnnscope.data.load_mnist(config.data_dir)`.
    model
        The model to train (your own, see :func:`cnnscope.checkpoints.open_model`, or a
        built-in with starting weights); by default ``config.model`` freshly built.
    device
        Where to train (see :func:`cnnscope.devices.resolve_device`); default the CPU.
        The returned model is back on the CPU.

    Returns
    -------
    TrainResult
        The trained model (eval mode) and its figures.
    """
    run = _Run(
        config, data if data is not None else load_mnist(config.data_dir), resume, model, device
    )
    state = run.state
    for cb in callbacks:
        cb.on_train_begin(state)
    run.t0 = time.perf_counter()
    try:
        run.model.train()
        while state.step < state.total_steps and not state.stop:
            if run.snapshot_due():
                run.snapshot()
            run.step()
            run.log_window()
            epoch_end = state.step % state.steps_per_epoch == 0 and state.step < state.total_steps
            every = run.config.checkpoint_every
            if epoch_end or (every and state.step % every == 0 and state.step < state.total_steps):
                # Before any callback: an interrupt raised in one must find the epoch's
                # (or the checkpoint_every steps') validation and checkpoint already written.
                val = run.validate()
                state.logs["val_accuracy"] = val["accuracy"]
                state.logs["val_cross_entropy"] = val["cross_entropy"]
            for cb in callbacks:
                cb.on_step_end(state)
            if epoch_end:
                for cb in callbacks:
                    cb.on_epoch_end(state)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            # The last completed step is a consistent point: save it so --resume goes on
            # from here (mid-epoch too: the epoch's shuffle is re-drawn from its seed),
            # with the weights of that step.
            run.save_stopped()
        run.log.close()
        raise
    result = run.finish(time.perf_counter() - run.t0)
    for cb in callbacks:
        cb.on_train_end(state)
    return result
