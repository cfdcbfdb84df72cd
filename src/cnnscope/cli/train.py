"""``cnnscope train``: TrainConfig's fields as flags, a progress bar, the final figures."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ._common import (
    UserError,
    add_data_flag,
    add_device_flag,
    add_model_flags,
    device,
    finite_float,
    int_in,
    model_choice,
)

# OpenMP threads sleep while they wait, so a busy machine cannot collapse training
# (cnnscope.train.threads); read when torch loads, which is after this module's import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HELP = "train a model (progress bar, checkpoints, metrics, snapshots)"

# Help for each TrainConfig field that the train command exposes as a flag.
_FLAGS: dict[str, str] = {
    "epochs": "passes over the training set (ignored when --steps > 0)",
    "steps": "total optimizer steps; 0 = epochs × steps per epoch",
    "batch_size": "images per step",
    "optimizer": "adam, adamw or sgd",
    "lr": "peak learning rate",
    "schedule": "onecycle or constant",
    "weight_decay": "weight decay (decoupled for adamw)",
    "label_smoothing": "label smoothing of the cross-entropy, 0–1",
    "dropout": "dropout before the last layer; default: the architecture's",
    "seed": "random seed for weights, shuffling and dropout",
    "train_limit": "train on the first N images only; 0 = all 55,000",
    "run_dir": "folder for weights, state, metrics, TensorBoard and snapshots",
    "log_every": "steps between metric lines",
    "checkpoint_every": "steps between checkpoints (validation, weights, state); 0 = epochs only",
    "snapshot_size": "test images in the embedding snapshots; 0 = none",
    "precision": "the training step's forward pass: fp32, bf16 (autocast), or auto: bf16 "
    "where the device computes it natively",
    "augment": "random affine augmentation: ±10° turns, ±2 px shifts, ×0.9–1.1 scaling",
}


def add(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recipe",
        default=None,
        choices=["fast", "seed", "best"],
        help="fast: tuned for CPU; seed: the TensorFlow tutorial's; best: augmented, long, "
        "for the best model (default: the model's own recipe, best for best, else fast)",
    )
    add_model_flags(p)
    _add_config_flags(p)
    add_data_flag(p)
    add_device_flag(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from RUN_DIR/state.safetensors, with the settings it was saved with",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --run-dir (without it, training there is refused)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="a seconds-long smoke run: 20 steps on 1,000 images (in a new temporary "
        "folder unless --run-dir names one)",
    )
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.add_argument(
        "--threads",
        type=int_in(0),
        default=0,
        help="torch threads; 0 = auto: OMP_NUM_THREADS if set, else every core, threads "
        "sleeping while they wait (OMP_WAIT_POLICY=PASSIVE) so a busy machine cannot "
        "collapse training (default 0)",
    )


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per field of ``_FLAGS``; unset flags leave the recipe's value."""
    from ..train import PRECISIONS, RECIPES, TrainConfig

    choices = {
        "optimizer": ["adam", "adamw", "sgd"],
        "schedule": ["onecycle", "constant"],
        "precision": list(PRECISIONS),
    }
    for f in dataclasses.fields(TrainConfig):
        if f.name not in _FLAGS:
            continue
        default = f.default
        kind: Any = {"float | None": float}.get(str(f.type), type(default))
        # Counts and seeds are never negative, numbers never NaN; TrainConfig.validate
        # owns the finer ranges.
        kind = {int: int_in(0), float: finite_float}.get(kind, kind)
        if any(f.name in recipe for recipe in RECIPES.values()):
            shown = ", ".join(f"{r}: {v.get(f.name, default)}" for r, v in RECIPES.items())
        else:
            shown = f"{default}"
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:  # --augment / --no-augment
            p.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=f"{_FLAGS[f.name]} ({shown})",
            )
            continue
        p.add_argument(
            flag,
            type=kind,
            choices=choices.get(f.name),
            default=argparse.SUPPRESS,
            help=f"{_FLAGS[f.name]} ({shown})",
        )


def run(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoints import open_model
    from ..models import DEFAULT_MODEL, get_spec, is_foreign_spec
    from ..train import TrainConfig, choose_threads, fit, runs
    from ._progress import ProgressBar

    overrides = {name: getattr(args, name) for name in _FLAGS if hasattr(args, name)}
    choice = model_choice(args)
    foreign = choice.model is not None and is_foreign_spec(choice.model)
    if choice.model:
        overrides["model"] = choice.model
    if foreign and "dropout" in overrides:
        raise UserError("--dropout sets a built-in's dropout; your own model keeps its own")
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.dry_run:
        if "run_dir" not in overrides:  # never the default run's folder
            overrides["run_dir"] = tempfile.mkdtemp(prefix="cnnscope-dry-run-")
        overrides = {
            "steps": 20,
            "train_limit": 1000,
            "snapshot_size": 100,
            "log_every": 5,
            **overrides,
        }
    recipe = args.recipe
    if recipe is None:  # the model's own: `--model best` trains with the best recipe
        recipe = "fast" if foreign else get_spec(choice.model or DEFAULT_MODEL).recipe
    config = TrainConfig.from_recipe(recipe, **overrides)
    config.validate()  # out-of-range flags fail before the data loads
    folder = Path(config.run_dir)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--run-dir {config.run_dir} is a file; give a folder")
    if args.resume and (folder / runs.STATE).exists():
        # The run's own settings; a flag given must agree with them (checked on load).
        given = {**overrides, "run_dir": str(folder)}
        if args.recipe is not None:
            given["recipe"] = args.recipe
        config = runs.saved_config(folder / runs.STATE, **given)
        if is_foreign_spec(config.model) and not foreign:
            raise UserError(
                f"--run-dir {folder} trains your own model {config.model}; resume with "
                f"--model {config.model} (cnnscope never imports code a file names)"
            )
    elif runs.holds_run(folder):
        if args.resume:  # weights without a state (a kill between the two writes)
            warnings.warn(
                f"{folder} has weights but no {runs.STATE} to resume from; starting over",
                RuntimeWarning,
                stacklevel=2,
            )
        elif not args.overwrite:
            raise UserError(
                f"--run-dir {folder} holds a run already; continue it with --resume, "
                "replace it with --overwrite, or give another --run-dir"
            )
        runs.clear_run(folder)
    config.validate()
    model = None
    if foreign or choice.weights:  # your own model, or starting weights: built here
        import torch

        torch.manual_seed(config.seed)  # fresh weights of your own model follow --seed too
        model, _ = open_model(
            choice.model, choice.weights, normalize=choice.normalize, input_size=choice.input_size
        )
        config.model = model.arch
    dev = device(args)
    threads_before = torch.get_num_threads()  # main() may be called in-process (tests)
    torch.set_num_threads(choose_threads(args.threads))
    progress = ProgressBar(quiet=args.json)
    try:
        result = fit(
            config, [progress, _stop_on_sigterm()], resume=args.resume, model=model, device=dev
        )
    except KeyboardInterrupt:
        progress.close()
        print(
            f"\ninterrupted at step {progress.step}; its weights and state are saved. "
            "Continue with:\n"
            f"  cnnscope train --resume --run-dir {config.run_dir}"
            + (f" --model {config.model}" if foreign else ""),
            file=sys.stderr,
        )
        return 130
    finally:
        torch.set_num_threads(threads_before)
    progress.close()
    if args.json:
        print(json.dumps({"weights": str(result.weights), **result.metrics}, indent=2))
    else:
        m = result.metrics
        print(
            f"{config.model}: test accuracy {m['test_accuracy']:.2%}, validation "
            f"{m['validation_accuracy']:.2%}, {result.steps} steps in {result.seconds:.0f} s"
        )
        print(f"weights: {result.weights}")
    return 0


def _stop_on_sigterm() -> Any:
    """A callback: SIGTERM (``kill``, a stop from ``serve``'s Train tab, a container
    stopping) ends the run as Ctrl-C does, but only between steps, so the state saved is
    always a whole step's."""
    from ..train import Callback

    class StopOnSigterm(Callback):
        asked = False

        def on_step_end(self, state: Any) -> None:
            if self.asked:
                raise KeyboardInterrupt

    callback = StopOnSigterm()

    def ask(_signum: int, _frame: object) -> None:
        callback.asked = True

    signal.signal(signal.SIGTERM, ask)
    return callback
