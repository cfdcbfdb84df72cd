"""Training: ``TrainConfig`` (config.py), ``fit`` (loop.py) and run folders (runs.py)."""

from .config import RECIPES, TrainConfig
from .loop import Callback, TrainResult, TrainState, fit

__all__ = ["RECIPES", "Callback", "TrainConfig", "TrainResult", "TrainState", "fit"]
