"""`cnnscope completion`: scripts generated from the parsers, that the shells accept."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnnscope.cli import COMMANDS, main


def _complete_in_bash(script: Path, line: str) -> list[str]:
    """What bash offers for ``line`` (ending where the cursor is) with ``script`` loaded."""
    words = line.split(" ")
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}\n"
        f"_shtab_cnnscope cnnscope {words[-1]!r} {words[-2]!r}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_and_flags(tmp_path: Path, capsys) -> None:
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "cnnscope.bash"
    script.write_text(out := capsys.readouterr().out)
    assert out.endswith("\n")  # a file written once, as the README says: a whole last line
    subprocess.run(["bash", "-n", str(script)], check=True)  # it parses
    assert _complete_in_bash(script, "cnnscope pe") == ["peek"]
    assert "--test-index" in _complete_in_bash(script, "cnnscope peek --te")
    assert set(_complete_in_bash(script, "cnnscope ")) >= set(COMMANDS)
    assert "--recipe" in _complete_in_bash(script, "cnnscope train --re")


def test_zsh_and_tcsh_scripts_name_every_command(capsys) -> None:
    assert main(["completion", "zsh"]) == 0
    zsh = capsys.readouterr().out
    assert zsh.startswith("#compdef cnnscope")
    assert all(name in zsh for name in COMMANDS) and "--test-index" in zsh
    assert main(["completion", "tcsh"]) == 0
    assert "complete cnnscope" in capsys.readouterr().out


def test_help_does_not_load_shtab() -> None:
    code = (
        "import sys\nfrom cnnscope.cli import main\nmain(['--help'])\n"
        "print('shtab' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root / "src")},
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "False"
