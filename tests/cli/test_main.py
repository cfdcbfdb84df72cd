"""The command line as a whole: the registry, help without the heavy imports, the error path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cnnscope.cli import COMMANDS, main


def test_help_lists_every_command(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_no_command_prints_help_exit_2(capsys) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_every_command_has_help(capsys) -> None:
    for name in COMMANDS:
        assert main([name, "--help"]) == 0, name
        assert f"cnnscope {name}" in capsys.readouterr().out


def test_python_dash_m_runs_the_cli() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "cnnscope.cli", "--version"],
        capture_output=True,
        text=True,
        cwd=root,
        env={"PYTHONPATH": str(root / "src")},
        check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith("cnnscope ")


def test_a_bug_is_a_traceback_not_exit_2(monkeypatch) -> None:
    from cnnscope.cli import models

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(models, "run", broken)
    with pytest.raises(KeyError):
        main(["models"])


def test_a_reader_that_leaves_the_pipe_is_no_traceback(monkeypatch, capsys) -> None:
    # Found from outside: `cnnscope data --json | head` ended in a BrokenPipeError traceback.
    from cnnscope.cli import models

    def closed_pipe(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(models, "run", closed_pipe)
    assert main(["models"]) == 141
    assert capsys.readouterr().err == ""


def test_help_imports_no_command_dependencies() -> None:
    # What `cnnscope --help` adds to `import cnnscope`: the command modules, nothing heavy.
    code = (
        "import sys, cnnscope; before = set(sys.modules)\n"
        "from cnnscope.cli import main; main(['--help'])\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=root,
        env={"PYTHONPATH": str(root / "src")},
        check=True,
    )
    added = done.stdout.strip().splitlines()[-1].split()
    heavy = ("cnnscope.train", "cnnscope.analysis", "cnnscope.server", "matplotlib", "uvicorn")
    assert not [m for m in added if m.startswith(heavy)], added
