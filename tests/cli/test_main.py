"""The command line as a whole: the registry, help without the heavy imports, the error path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cnnscope.cli import COMMANDS, main


def test_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_no_command_prints_help_exit_2(capsys) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_every_command_has_help(capsys) -> None:
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0, name
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
