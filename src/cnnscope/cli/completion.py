"""``cnnscope completion``: a shell completion script generated from the parsers (shtab).

Generated, not written by hand, so it follows every flag as commands change. shtab is
imported here only: ``cnnscope --help`` never loads it.
"""

from __future__ import annotations

import argparse

HELP = (
    "print a shell completion script; write it once: cnnscope completion bash > "
    "~/.local/share/bash-completion/completions/cnnscope"
)

SHELLS = ("bash", "zsh", "tcsh")

# Flags whose value is a path: the shell offers folders or files for them.
_FOLDERS = {"out", "run_dir", "data_dir", "run", "tensorboard"}
_FILES = {"image", "weights"}


def add(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")


def script(shell: str) -> str:
    """The completion script for ``shell``, covering every command and flag."""
    import shtab

    from . import full_parser

    parser = full_parser()
    for action in _actions(parser):
        if action.dest in _FOLDERS:
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        elif action.dest in _FILES:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
    return str(shtab.complete(parser, shell=shell))


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every action of ``parser`` and of its subcommands' parsers."""
    found = []
    for action in parser._actions:
        found.append(action)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_actions(sub))
    return found


def run(args: argparse.Namespace) -> int:
    # Written once to a file, not eval'ed in every new shell: building every command's
    # parser imports torch (about 2 s).
    text = script(args.shell)
    print(text, end="" if text.endswith("\n") else "\n")
    return 0
