"""Small seeded training runs for tests: a config that trains in seconds, an interrupt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnscope.train import Callback, TrainConfig, TrainState


def small_config(tmp_path: Path, **overrides: Any) -> TrainConfig:
    """hvass on 500 digits, 2 epochs of 10 steps, into ``tmp_path/run``; ``overrides`` win."""
    base = {
        "model": "hvass",
        "epochs": 2,
        "batch_size": 50,
        "train_limit": 500,
        "run_dir": str(tmp_path / "run"),
        "log_every": 5,
        "snapshot_steps": (0, 3),
        "snapshot_size": 64,
    }
    return TrainConfig.from_recipe("fast", **{**base, **overrides})


class InterruptAt(Callback):
    """Ctrl-C after step ``step``, as a user's would arrive."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.step:
            raise KeyboardInterrupt
