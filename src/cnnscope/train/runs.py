"""Run folders: what a training run writes, and how it is read back on resume.

A run folder holds everything a run makes::

    RUN/
      model.safetensors, model.json   weights + metadata, rewritten at each checkpoint and stop
      state.safetensors               model + optimizer + RNG + loop position (--resume)
      metrics.jsonl                   one JSON object per log interval and per validation
      tb/                             TensorBoard events: accuracy, cross_entropy, learning rate,
                                      train and validation on one chart (Custom Scalars),
                                      weight and activation histograms per validation,
                                      hparams with the final metrics, the graph
                                      (with the [tensorboard] extra installed)
      snapshots/                      fc1 and logits of a fixed test subset over training
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from .._extras import MissingExtra, require
from .._io import atomic_write_text
from ..checkpoints import CheckpointError
from ..data import MNIST
from ..devices import device_of
from ..models import StagedModel
from .config import TrainConfig

__all__ = [
    "MetricsLog",
    "check_resumable",
    "clear_run",
    "holds_run",
    "metadata",
    "read_metrics",
    "saved_config",
]

WEIGHTS = "model.safetensors"
STATE = "state.safetensors"
METRICS = "metrics.jsonl"
TENSORBOARD = "tb"
SNAPSHOTS = "snapshots"


def _summary_writer() -> Any:
    """TensorBoard's writer, or None without the [tensorboard] extra (metrics.jsonl suffices)."""
    try:
        require("tensorboard", "tensorboard")
    except MissingExtra:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


# Custom Scalars: each train curve with its validation (and final test) point on one chart.
TB_LAYOUT = {
    "train and validation": {
        name: ["Multiline", [f"^{name}$", f"^validation/{name}$", f"^test/{name}$"]]
        for name in ("accuracy", "cross_entropy")
    }
}
HISTOGRAM_KINDS = ("act", "fc")  # activation histograms: a few stages, cheap
ACTIVATION_SAMPLE = 32  # images of the last validation batch kept for them


class MetricsLog:
    """metrics.jsonl plus TensorBoard scalars, both trimmed to ``start_step`` on resume.

    TensorBoard also gets, from the records written: the learning rate of each train
    record; weight histograms and activation histograms (of the last validation batch's
    first images, recorded by hooks released in :meth:`close`) at each validation; and, at
    the test record that ends a run, the hparams with the final metrics. TensorBoard
    events are written only when the [tensorboard] extra is installed.
    """

    _sample: _ActivationSample | None = None  # hooks, from the first write to close()
    _last_validation: dict[str, Any] | None = None
    _histogram_step = -1

    def __init__(self, run_dir: Path, start_step: int, model: StagedModel, graph: bool) -> None:
        self._model = model  # for the histograms: the model being trained
        SummaryWriter = _summary_writer()
        self.path = run_dir / METRICS
        if start_step == 0:
            self.path.write_text("")
        elif self.path.exists():
            kept = [line for step, line in read_metrics(self.path) if step <= start_step]
            # Atomic: a crash here must not lose the history the resume keeps.
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        self._file = open(self.path, "a")  # noqa: SIM115 - closed in close()
        # purge_step drops events a crashed run wrote after the step we resume from.
        self.tb = (
            None
            if SummaryWriter is None
            else SummaryWriter(str(run_dir / TENSORBOARD), purge_step=start_step or None)
        )
        if graph and self.tb is not None:
            was_training = model.training
            model.eval()
            with warnings.catch_warnings():
                # TensorBoard's graph export still goes through torch.jit.trace, which
                # PyTorch has deprecated; the graph it writes is fine.
                warnings.simplefilter("ignore", DeprecationWarning)
                x = torch.zeros(1, *model.input_shape, device=device_of(model))
                self.tb.add_graph(model, x)
            model.train(was_training)

    def write(self, record: dict[str, Any], prefix: str = "") -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        tb = getattr(self, "tb", None)
        if tb is None:  # TensorBoard not installed: metrics.jsonl only
            return
        if self._sample is None:  # the first record: the layout, and hooks for histograms
            tb.add_custom_scalars(TB_LAYOUT)
            self._sample = _ActivationSample(self._model)
        step = record["step"]
        for name in ("accuracy", "cross_entropy"):
            if name in record:
                tb.add_scalar(prefix + name, record[name], step)
        if "lr" in record:
            tb.add_scalar("learning_rate", record["lr"], step)
        if prefix == "validation/":
            self._last_validation = record
            if step != self._histogram_step:  # the last epoch's end is validated twice
                write_histograms(tb, self._model, self._sample.outputs, step)
                self._histogram_step = step
        if prefix == "test/":
            write_hparams(tb, self.path.parent, record, self._last_validation)
        tb.flush()

    def close(self) -> None:
        self._file.close()
        if self._sample is not None:
            self._sample.close()
        tb = getattr(self, "tb", None)
        if tb is not None:
            tb.close()


class _ActivationSample:
    """Forward hooks keeping the first images' outputs of a few stages, in eval mode only:
    the last validation batch, the same images every epoch. Released by :meth:`close`."""

    def __init__(self, model: StagedModel) -> None:
        from ..models import stage_infos

        self.outputs: dict[str, torch.Tensor] = {}
        stages = [s for s, info in stage_infos(model).items() if info.kind in HISTOGRAM_KINDS]
        self._handles = [
            model.get_submodule(s).register_forward_hook(self._hook(s)) for s in stages
        ]

    def _hook(self, stage: str) -> Any:
        def hook(module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            if not module.training:  # evaluation passes only, never a training batch
                self.outputs[stage] = output[:ACTIVATION_SAMPLE].detach().clone()

        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def write_histograms(
    tb: Any, model: StagedModel, activations: dict[str, torch.Tensor], step: int
) -> None:
    """``weights/STAGE`` for every conv and fully connected stage, ``activations/STAGE``
    for the sampled ones: how weights spread and units saturate or die as training goes."""
    from ..models import stage_infos

    for stage, info in stage_infos(model).items():
        weight = getattr(model.get_submodule(stage), "weight", None)
        if info.kind in ("conv", "fc", "logits") and isinstance(weight, torch.Tensor):
            tb.add_histogram(f"weights/{stage}", weight.detach(), step)
    for stage, output in activations.items():
        tb.add_histogram(f"activations/{stage}", output, step)


def write_hparams(
    tb: Any, run_dir: Path, test: dict[str, Any], validation: dict[str, Any] | None
) -> None:
    """The run's settings with its final metrics, for TensorBoard's HParams tab.

    The settings are the ``train_config`` of the checkpoint's metadata (``model.json``,
    written by the validation just before); the metrics are the last validation and the
    test figures, under their scalar tags, so each run is one row of the HParams table.
    """
    from torch.utils.tensorboard.summary import hparams

    sidecar = run_dir / WEIGHTS.replace(".safetensors", ".json")
    try:
        config = json.loads(sidecar.read_text()).get("train_config", {})
    except (OSError, ValueError):
        config = {}
    # HParams takes numbers, strings and booleans; lists and None are shown as text.
    settings = {
        k: v if isinstance(v, int | float | str | bool) else json.dumps(v)
        for k, v in config.items()
        if k not in ("run_dir", "data_dir")
    }
    metrics = {f"test/{k}": test[k] for k in ("accuracy", "cross_entropy") if k in test}
    if validation:
        metrics.update({f"validation/{k}": validation[k] for k in ("accuracy", "cross_entropy")})
    for summary in hparams(settings, metrics):
        tb.file_writer.add_summary(summary, test["step"])


def read_metrics(path: Path) -> list[tuple[int, str]]:
    """(step, line) of each record in ``path``; a torn last line is dropped with a warning.

    A crash mid-append leaves the last line cut short: that is expected and harmless (the
    run resumes from its last checkpoint, whose records are all whole). A bad line anywhere
    else means the file was damaged, and resuming onto it would hide that.
    """
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
            step = record["step"]
            if not isinstance(step, int):
                raise TypeError(f"step {step!r} is not an integer")
        except (ValueError, KeyError, TypeError) as e:
            if i < len(lines) - 1:
                raise CheckpointError(
                    f"{path}: line {i + 1} is not a metrics record ({type(e).__name__}: {e}). "
                    "The file is damaged: delete that line (or the file) to resume, or start "
                    "a new --run-dir."
                ) from e
            warnings.warn(
                f"{path}: dropped its torn last line ({line[:40]!r}), left by a run that "
                "stopped mid-write; its figures are written again as training goes on.",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        records.append((step, line))
    return records


_FREE = ("run_dir", "checkpoint_every")  # settings a resume may change
# Settings added since a state could have been saved, with the value its run had.
_ADDED = {"precision": "fp32"}


def check_resumable(path: Path, saved: dict[str, Any], config: TrainConfig) -> None:
    """Refuse to resume a run saved with other settings (``run_dir`` may differ, and
    ``checkpoint_every``, which changes when the run is saved, not what it learns)."""
    saved = {k: v for k, v in {**_ADDED, **saved}.items() if k not in _FREE}
    mine = {
        k: v
        for k, v in json.loads(json.dumps(dataclasses.asdict(config))).items()
        if k not in _FREE
    }
    if saved != mine:
        diff = ", ".join(
            f"{k} {saved.get(k)!r} saved, {mine[k]!r} given"
            for k in sorted(mine)
            if saved.get(k) != mine[k]
        )
        raise CheckpointError(
            f"{path}: saved by a run with other settings ({diff}); resume without "
            "those flags (the run's own settings are used) or start a new --run-dir."
        )


def saved_config(path: Path, **given: Any) -> TrainConfig:
    """The settings the state file ``path`` was saved with, ``given`` laid over them: what
    ``cnnscope train --resume`` continues with (``check_resumable`` then refuses a
    change that would make it another run)."""
    from ..checkpoints import read_training_config

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in {**_ADDED, **read_training_config(path)}.items()
        if k in fields
    }
    return TrainConfig(**{**saved, **given})


RUN_FILES = (WEIGHTS, "model.json", STATE, METRICS, TENSORBOARD, SNAPSHOTS)


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run's weights or state: training there anew would
    replace them."""
    return (folder / WEIGHTS).exists() or (folder / STATE).exists()


def clear_run(folder: Path) -> None:
    """Remove what a run wrote in ``folder`` (nothing else), so a new run starts clean."""
    import shutil

    for name in RUN_FILES:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def metadata(
    config: TrainConfig,
    data: MNIST,
    last_val: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
    *,
    complete: bool | None = None,
) -> dict[str, Any]:
    """``model.json``'s fields. ``metrics`` are a finished run's figures (``complete``
    by default) or a stopped run's; without them, the last validation's (``last_val``)."""
    if complete is None:
        complete = metrics is not None
    if metrics is None:
        assert last_val is not None, "a checkpoint without metrics has its validation"
        metrics = {"validation_accuracy": last_val["accuracy"], "steps": last_val["step"]}
    return {
        "metrics": metrics,
        "train_config": dataclasses.asdict(config),
        "data": {
            "sha256": data.checksum,
            "train_images": len(data.train_images),
            "source": str(data.source),
            "format": data.format,
            "image_size": list(data.image_size),
        },
        "classes": list(data.classes),  # the name of each output, in order
        "threads": torch.get_num_threads(),
        "complete": complete,
    }
