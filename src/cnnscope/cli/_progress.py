"""The progress bar of ``cnnscope train``: a training callback drawn with tqdm."""

from __future__ import annotations

from typing import Any

from ..train import Callback, TrainState


class ProgressBar(Callback):
    """A tqdm bar over optimizer steps: loss, batch accuracy, last validation accuracy."""

    def __init__(self) -> None:
        self._bar: Any = None
        self.step = 0

    def on_train_begin(self, state: TrainState) -> None:
        from tqdm import tqdm

        self.step = state.step
        self._bar = tqdm(
            total=state.total_steps,
            initial=state.step,
            unit="step",
            mininterval=0.5,
            desc=state.config.model,
            dynamic_ncols=True,
        )

    def on_step_end(self, state: TrainState) -> None:
        self._bar.update(state.step - self.step)
        self.step = state.step
        if "accuracy" in state.logs:
            postfix = {"loss": f"{state.logs['loss']:.3f}", "acc": f"{state.logs['accuracy']:.3f}"}
            if "val_accuracy" in state.logs:
                postfix["val"] = f"{state.logs['val_accuracy']:.4f}"
            self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
