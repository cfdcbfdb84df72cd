"""User errors: one line on stderr, exit status 2, never a traceback."""

from __future__ import annotations

import pytest

from cnnscope.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "resnet", "--dry-run"], "valid: deep_mnist, hvass"),
        (["evaluate", "--weights", "nope.safetensors"], "no such weights file"),
        (["train", "--dry-run", "--data-dir", "/nonexistent"], "lacks train-images"),
        (["evaluate", "--model", "nonesuch"], "neither a model name"),
    ],
)
def test_user_errors_are_one_line_exit_2(argv, message, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
