"""Run folders: what a training run writes, and how it is read back on resume.

A run folder holds everything a run makes::

    RUN/
      model.safetensors, model.json   weights + metadata, rewritten every epoch
      state.safetensors               model + optimizer + RNG + loop position (--resume)
      metrics.jsonl                   one JSON object per log interval and per validation
      tb/                             TensorBoard events: accuracy, cross_entropy, the graph
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
from ..checkpoints import CheckpointError
from ..data import MNIST
from ..models import StagedModel
from .config import TrainConfig

__all__ = ["MetricsLog", "check_resumable", "metadata", "read_metrics"]

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


class MetricsLog:
    """metrics.jsonl plus TensorBoard scalars, both trimmed to ``start_step`` on resume.

    TensorBoard events are written only when the [tensorboard] extra is installed.
    """

    def __init__(self, run_dir: Path, start_step: int, model: StagedModel, graph: bool) -> None:
        SummaryWriter = _summary_writer()
        self.path = run_dir / METRICS
        if start_step == 0:
            self.path.write_text("")
        elif self.path.exists():
            kept = [line for step, line in read_metrics(self.path) if step <= start_step]
            self.path.write_text("".join(line + "\n" for line in kept))
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
                self.tb.add_graph(model, torch.zeros(1, *model.input_shape))
            model.train(was_training)

    def write(self, record: dict[str, Any], prefix: str = "") -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self.tb is None:
            return
        for name in ("accuracy", "cross_entropy"):
            if name in record:
                self.tb.add_scalar(prefix + name, record[name], record["step"])
        self.tb.flush()

    def close(self) -> None:
        self._file.close()
        if self.tb is not None:
            self.tb.close()


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


def check_resumable(path: Path, saved: dict[str, Any], config: TrainConfig) -> None:
    """Refuse to resume a run saved with other settings (``run_dir`` may differ)."""
    saved = {k: v for k, v in saved.items() if k != "run_dir"}
    mine = {
        k: v
        for k, v in json.loads(json.dumps(dataclasses.asdict(config))).items()
        if k != "run_dir"
    }
    if saved != mine:
        diff = sorted(k for k in mine if saved.get(k) != mine[k])
        raise CheckpointError(
            f"{path}: saved by a run with other settings ({', '.join(diff)}); "
            "resume with the same settings or start a new --run-dir."
        )


def metadata(
    config: TrainConfig, data: MNIST, last_val: dict[str, Any], metrics: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "metrics": metrics
        or {"validation_accuracy": last_val["accuracy"], "steps": last_val["step"]},
        "train_config": dataclasses.asdict(config),
        "data": {"sha256": data.checksum, "train_images": len(data.train_images)},
        "threads": torch.get_num_threads(),
        "complete": metrics is not None,
    }
