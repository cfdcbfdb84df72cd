"""What several commands share: the user-error type, the model and data flags, output folders."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn


class UserError(Exception):
    """A mistake the user can fix (a bad value, a missing file): one line on stderr, exit 2."""


def one_line(message: str) -> str:
    """``message`` on one line: the lines of a multi-line message joined by spaces."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


class Parser(argparse.ArgumentParser):
    """argparse with cnnscope's error form: one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``lo``–``hi`` (no upper bound if ``hi`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(
                f"{value} outside {lo}–{hi}" if hi is not None else f"{value} is below {lo}"
            )
        return value

    return parse


def finite_float(text: str) -> float:
    """An argparse type: a number that is neither NaN nor infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def float_in(lo: float, hi: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [lo, hi] (in (lo, hi] when ``low_open``)."""

    def parse(text: str) -> float:
        value = finite_float(text)
        below = value <= lo if low_open else value < lo
        if below or value > hi:
            interval = f"{'(' if low_open else '['}{lo:g}, {hi:g}]"
            raise argparse.ArgumentTypeError(f"{value:g} outside {interval}")
        return value

    return parse


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
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {path} is a file; give a folder (it is created if missing)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def add_image_flags(p: argparse.ArgumentParser) -> None:
    """``--image FILE`` or ``--test-index N``, one of them required."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="an image file (a drawing, a scan: preprocessed MNIST-style)")
    src.add_argument("--test-index", type=int_in(0), help="an MNIST test image, 0–9999")


def input_image(args: argparse.Namespace, meta: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The (28, 28) float image that --image or --test-index names, and where it came from.

    An image file is read with :func:`cnnscope.decode.read_image` (its pixel count
    checked from the header); dark ink on light paper is inverted to MNIST's white on
    black, and anything but 28×28 is preprocessed like a drawing.
    """
    import numpy as np

    if args.image:
        from ..decode import read_image
        from ..preprocess import ink_on_black, to_mnist

        path = Path(args.image)
        if not path.is_file():
            raise UserError(f"{path}: no such image file")
        gray = read_image(path)  # (H, W) grey levels in [0, 1], as stored
        if gray.shape != (28, 28):
            return to_mnist(gray), args.image  # the drawing path, inversion included
        return ink_on_black(gray)[0], args.image  # used as is, but white ink on black
    from ..data import load_for

    data = load_for(meta or {}, args.data_dir)  # the test set the weights were trained on
    if not 0 <= args.test_index < len(data.test_images):
        raise UserError(f"--test-index {args.test_index} outside 0–{len(data.test_images) - 1}")
    image = data.test_images[args.test_index].numpy().astype(np.float32) / 255.0
    label = int(data.test_labels[args.test_index])
    name = data.classes[label] if label < data.num_classes else str(label)
    shown = str(label) if name == str(label) else f"{label}: {name}"
    return image, f"test image {args.test_index} (label {shown})"
