"""The ``cnnscope`` command: a thin layer of flags over the Python API.

Each subcommand is a module of this package with its flags beside its code: ``HELP`` (one
line), ``add(parser)`` (its flags) and ``run(args) -> int``. Only the chosen command's flags
are built, so ``cnnscope --help`` imports no command's dependencies.

One error path: an error the user can fix (a bad value, a missing or corrupt file, an
unknown model or stage) is one line on stderr and exit status 2; anything else is a bug and
ends in a traceback and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from .. import __version__
from ._common import Parser, UserError, one_line

__all__ = ["COMMANDS", "UserError", "full_parser", "main"]

# Command name → module of this package, in the order ``cnnscope --help`` lists them.
COMMANDS: dict[str, str] = {
    "models": "models",
    "data": "data",
    "train": "train",
    "evaluate": "evaluate",
    "explain": "explain",
    "peek": "peek",
    "embed": "embed",
    "features": "features",
    "filters": "filters",
    "top-examples": "top_examples",
    "unused": "unused",
    "serve": "serve",
    "export": "export",
    "completion": "completion",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cnnscope`` command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(_chosen(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else 0
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():  # restores showwarning on the way out
            warnings.showwarning = _warning_line(args.command)
            return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cnnscope data --json | head`: the reader left, not an error
        with contextlib.suppress(OSError, ValueError):  # no more output, not even at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command its pipe ended
    except Exception as e:
        if not isinstance(e, _user_errors()) or isinstance(e, UnicodeError):
            raise  # a bug: the traceback is what a report needs
        print(f"cnnscope {args.command}: error: {one_line(str(e))}", file=sys.stderr)
        return 2


def _warning_line(command: str) -> Callable[..., None]:
    """Show a warning as one line, ``cnnscope COMMAND: warning: ...``, like an error."""

    def show(message: Warning | str, *_args: Any, **_kwargs: Any) -> None:
        print(f"cnnscope {command}: warning: {one_line(str(message))}", file=sys.stderr)

    return show


def _user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean "the input was wrong", not "cnnscope is wrong"."""
    from .._extras import MissingExtra
    from ..checkpoints import CheckpointError
    from ..data import DataError
    from ..preprocess import PreprocessError

    # ValueError: the API's validation (unknown model, stage, unit, option out of range);
    # OSError subclasses: a path that is missing, unwritable, or a folder where a file goes.
    # MissingExtra: a view whose optional package is not installed (names the extra).
    return (
        UserError,
        MissingExtra,
        DataError,
        CheckpointError,
        PreprocessError,
        ValueError,
        FileNotFoundError,
        PermissionError,
        IsADirectoryError,
        NotADirectoryError,
    )


def _command(name: str) -> ModuleType:
    return importlib.import_module(f".{COMMANDS[name]}", __name__)


def _chosen(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option), if any."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def full_parser() -> argparse.ArgumentParser:
    """The parser with every command's flags built (imports every command's dependencies):
    what shell completion and a CLI reference are generated from."""
    return _parser(None, everything=True)


def _parser(chosen: str | None, *, everything: bool = False) -> argparse.ArgumentParser:
    """The parser: every command listed, only ``chosen``'s flags built (lazy imports)."""
    p = Parser(
        prog="cnnscope",
        description="Train a CNN on MNIST and see what it learned.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"cnnscope {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _command(name)
        c = sub.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        if name == chosen or everything:
            module.add(c)
            c.set_defaults(handler=module.run)  # not `run`: embed has a --run flag
    return p
