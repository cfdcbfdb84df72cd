"""What several commands share: the user-error type, the model and data flags, output folders."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
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


class _InOrder(argparse.Action):
    """Append ``(flag, value)`` to one shared list, so that model flags pair up in order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        items = list(getattr(namespace, self.dest, None) or [])
        items.append((self.metavar, values))
        setattr(namespace, self.dest, items)


def _normalize(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not MEAN,STD (e.g. 0.1307,0.3081)")
    mean, std = (finite_float(p) for p in parts)
    if std <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the std must be above 0")
    return mean, std


def _input_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    if len(parts) == 1:
        parts = parts * 2  # 32 means 32×32
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not H,W (e.g. 28,28) or one side")
    h, w = (int_in(4, 1024)(p) for p in parts)
    return h, w


@dataclass
class ModelChoice:
    """One model named on the command line: what :func:`cnnscope.checkpoints.open_model`
    takes."""

    model: str | None = None  # NAME, path/file.py:Class or package.module:Class
    weights: str | None = None
    normalize: tuple[float, float] | None = None
    input_size: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        """How the model is named in output: ``deep_mnist``, ``net.py:Net (w.pt)``."""
        if self.weights:
            return f"{self.model} ({self.weights})" if self.model else self.weights
        return self.model or "deep_mnist"


_FIELDS = {"NAME": "model", "FILE": "weights", "MEAN,STD": "normalize", "H,W": "input_size"}


def add_model_flags(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    """``--model``, ``--weights``, ``--normalize``, ``--input-size``: a built-in or your own.

    Each of ``--weights``, ``--normalize`` and ``--input-size`` belongs to the ``--model``
    beside it, so ``serve --model a.py:A --weights a.pt --model b.py:B --weights b.pt``
    pairs them. Read them back with :func:`model_choices` or :func:`open_model`.
    """
    g = p.add_argument_group("model")
    more = " (repeat to serve several; the first is the default)" if many else ""
    g.add_argument(
        "--model",
        dest="model_items",
        action=_InOrder,
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="a built-in (deep_mnist, hvass, single_conv, lenet5, best; default deep_mnist) "
        "or your own model as path/to/file.py:Class or package.module:Class" + more,
    )
    g.add_argument(
        "--weights",
        dest="model_items",
        action=_InOrder,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="weights: a .safetensors file from cnnscope train; for your own model also a "
        ".pt/.pth state dict (read with torch.load(weights_only=True))",
    )
    g.add_argument(
        "--normalize",
        dest="model_items",
        action=_InOrder,
        default=argparse.SUPPRESS,
        metavar="MEAN,STD",
        type=_normalize,
        help="your model was trained on (x - MEAN) / STD, e.g. 0.1307,0.3081 (PyTorch's MNIST "
        "example); cnnscope applies it inside the model",
    )
    g.add_argument(
        "--input-size",
        dest="model_items",
        action=_InOrder,
        default=argparse.SUPPRESS,
        metavar="H,W",
        type=_input_size,
        help="your model's input size (default: its input_shape attribute, else 28,28)",
    )


def add_device_flag(p: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|mps``; read back with :func:`device`."""
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA if present, else MPS, else CPU), cpu, cuda, cuda:N or mps",
    )


def device(args: argparse.Namespace) -> Any:
    """The ``torch.device`` of ``--device``; one this machine lacks is a UserError."""
    from ..devices import resolve_device

    try:
        return resolve_device(args.device)
    except ValueError as e:
        raise UserError(str(e)) from None


def model_choices(args: argparse.Namespace) -> list[ModelChoice]:
    """The models the flags name, in order (one ``deep_mnist`` when none is named)."""
    choices: list[ModelChoice] = []
    for metavar, value in getattr(args, "model_items", None) or []:
        name = _FIELDS[metavar]
        if choices and getattr(choices[-1], name) is None:  # the flag joins its --model
            setattr(choices[-1], name, value)
            continue
        choices.append(ModelChoice(**{name: value}))
    return choices or [ModelChoice()]


def model_choice(args: argparse.Namespace) -> ModelChoice:
    """The one model a command works on; two ``--model`` flags are a UserError."""
    choices = model_choices(args)
    if len(choices) > 1:
        raise UserError(
            f"give one model, not {len(choices)} ({', '.join(c.label for c in choices)}); "
            "only serve takes several"
        )
    return choices[0]


def open_model(args: argparse.Namespace, choice: ModelChoice | None = None) -> tuple[Any, Any]:
    """``(model, metadata)`` of the flags' model (eval mode, CPU); bad input: one line."""
    from ..checkpoints import open_model as _open

    c = choice or model_choice(args)
    model, meta = _open(c.model, c.weights, normalize=c.normalize, input_size=c.input_size)
    if not c.weights and meta.get("model") == "foreign" and args.command not in ("models", "train"):
        import warnings

        warnings.warn(
            f"{c.model}: no --weights, so its weights are freshly initialised (untrained); "
            "give --weights FILE for the trained ones",
            RuntimeWarning,
            stacklevel=2,
        )
    return model, meta


def model_ref(args: argparse.Namespace) -> str:
    """The model's label for output (kept for commands that print where weights came from)."""
    return model_choice(args).label


def add_data_flag(p: argparse.ArgumentParser, help_: str | None = None) -> None:
    p.add_argument("--data-dir", help=help_ or "folder with the four IDX .gz files")


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


def input_image(
    args: argparse.Namespace,
    meta: dict[str, Any] | None = None,
    size: tuple[int, int] = (28, 28),
) -> tuple[Any, str]:
    """The ``size`` (the model's (H, W)) float image that --image or --test-index names,
    and where it came from.

    An image file is read with :func:`cnnscope.decode.read_image` (its pixel count
    checked from the header); dark ink on light paper is inverted to MNIST's white on
    black, and anything but ``size`` is preprocessed like a drawing, fitted to ``size``
    (:func:`cnnscope.preprocess.prepare`). So is a test image of another size.
    """
    import numpy as np

    if args.image:
        from ..decode import read_image
        from ..preprocess import ink_on_black, to_mnist

        path = Path(args.image)
        if not path.is_file():
            raise UserError(f"{path}: no such image file")
        gray = read_image(path)  # (H, W) grey levels in [0, 1], as stored
        if gray.shape != tuple(size):
            return to_mnist(gray, size), args.image  # the drawing path, inversion included
        return ink_on_black(gray)[0], args.image  # used as is, but white ink on black
    from ..data import load_for

    data = load_for(meta or {}, args.data_dir)  # the test set the weights were trained on
    if not 0 <= args.test_index < len(data.test_images):
        raise UserError(f"--test-index {args.test_index} outside 0–{len(data.test_images) - 1}")
    image = data.test_images[args.test_index].numpy().astype(np.float32) / 255.0
    label = int(data.test_labels[args.test_index])
    name = data.classes[label] if label < data.num_classes else str(label)
    shown = str(label) if name == str(label) else f"{label}: {name}"
    source = f"test image {args.test_index} (label {shown})"
    if image.shape != tuple(size):  # a test set of another size than the model's input
        from ..preprocess import to_mnist

        h, w = image.shape
        return to_mnist(image, size), f"{source}, {h}×{w} fitted to {size[0]}×{size[1]}"
    return image, source
