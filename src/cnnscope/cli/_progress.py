"""Progress bars of the long commands, drawn with rich on stderr.

The analysis functions report through callbacks, ``progress(done, total)``; :func:`bar`
turns one into a rich bar. Bars are drawn only when stderr is a terminal and the command
was not asked for ``--json``, so pipes, logs and tests see nothing but the results.
Commands import this inside ``run``: it imports the training package, which
``cnnscope --help`` must not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..train import Callback, TrainState

__all__ = ["ProgressBar", "Report", "bar"]

Report = Callable[[int, int], None]  # progress(done, total)


def _console() -> Any:
    """The console bars draw on: stderr (a test swaps in a terminal of its own)."""
    from rich.console import Console

    return Console(stderr=True)


def _progress(console: Any, *fields: Any) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        *fields,
        console=console,
        transient=False,
    )


@contextmanager
def bar(description: str, *, quiet: bool = False) -> Iterator[Report]:
    """A progress callback ``report(done, total)`` drawing one bar, for a ``with`` block.

    Silent (the callback does nothing) when ``quiet`` (``--json``) or when stderr is not a
    terminal. Each call sets the bar to ``done`` of ``total``; a new ``total`` is taken.
    """
    console = _console()
    if quiet or not console.is_terminal:
        yield lambda done, total: None
        return
    progress = _progress(console)
    tasks: list[Any] = []  # started on the first report: a cached answer draws nothing

    def report(done: int, total: int) -> None:
        if not tasks:
            progress.start()
            tasks.append(progress.add_task(description, total=total))
        progress.update(tasks[0], completed=done, total=total)

    try:
        yield report
    finally:
        if tasks:
            progress.stop()


class ProgressBar(Callback):
    """``cnnscope train``'s bar over optimizer steps: loss, batch accuracy, validation."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self._progress: Any = None
        self._task: Any = None
        self.step = 0

    def on_train_begin(self, state: TrainState) -> None:
        from rich.progress import TextColumn

        self.step = state.step
        console = _console()
        if self.quiet or not console.is_terminal:
            return
        self._progress = _progress(console, TextColumn("{task.fields[metrics]}"))
        self._progress.start()
        self._task = self._progress.add_task(
            state.config.model, total=state.total_steps, completed=state.step, metrics=""
        )

    def on_step_end(self, state: TrainState) -> None:
        self.step = state.step
        if self._progress is None:
            return
        metrics = ""
        if "accuracy" in state.logs:
            metrics = f"loss {state.logs['loss']:.3f} acc {state.logs['accuracy']:.3f}"
            if "val_accuracy" in state.logs:
                metrics += f" val {state.logs['val_accuracy']:.4f}"
        self._progress.update(self._task, completed=state.step, metrics=metrics)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
