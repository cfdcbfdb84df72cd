"""What several commands share: the user-error type, the model and data flags, output folders."""

from __future__ import annotations

import argparse
from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix (a bad value, a missing file): one line on stderr, exit 2."""


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """``--model NAME`` (shipped weights) or ``--weights FILE``, not both."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", default="deep_mnist", help="shipped weights of this architecture")
    g.add_argument("--weights", help="a .safetensors file written by cnnscope train")


def add_data_flag(p: argparse.ArgumentParser, help_: str | None = None) -> None:
    p.add_argument("--data-dir", help=help_ or "folder with the four IDX .gz files")


def model_ref(args: argparse.Namespace) -> str:
    """What ``load_model`` should load: the --weights file, else the --model name."""
    return str(args.weights or args.model)


def out_dir(path: str) -> Path:
    """The --out folder, created if needed."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out
