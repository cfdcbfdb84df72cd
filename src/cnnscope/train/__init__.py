"""Training: ``TrainConfig`` (config.py), ``fit`` (loop.py) and run folders (runs.py),
``choose_threads`` (threads.py)."""

from .config import PRECISIONS, RECIPES, TrainConfig
from .loop import Callback, TrainResult, TrainState, fit
from .threads import choose_threads

__all__ = [
    "PRECISIONS",
    "RECIPES",
    "Callback",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "choose_threads",
    "fit",
]
