"""Progress bars: on stderr when it is a terminal, silent otherwise and with --json."""

from __future__ import annotations

import io

import pytest

from cnnscope.cli import _progress, main
from cnnscope.cli._progress import bar


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Bars drawn on a terminal of the test's own; returns what was drawn."""
    from rich.console import Console

    screen = io.StringIO()
    monkeypatch.setattr(
        _progress, "_console", lambda: Console(file=screen, force_terminal=True, width=120)
    )
    return screen


def test_bar_is_silent_off_a_terminal(capsys) -> None:
    with bar("work") as report:
        report(1, 2)
        report(2, 2)
    assert capsys.readouterr() == ("", "")


def test_bar_draws_on_a_terminal_unless_quiet(terminal) -> None:
    with bar("work") as report:
        for done in range(1, 4):
            report(done, 3)
    assert "work" in terminal.getvalue() and "3/3" in terminal.getvalue()
    terminal.truncate(0)
    with bar("quiet work", quiet=True) as report:
        report(3, 3)
    with bar("never reported"):
        pass  # a cached answer: no bar at all
    assert terminal.getvalue().strip("\x00") == ""  # truncate(0) leaves the position


M = ["--model", "lenet5"]
OUT = ["--out", "o"]


@pytest.mark.parametrize(
    ("argv", "drawn"),
    [
        (["unused", *M, "--layers", "relu1,fc1"], "20000/20000"),  # one bar over both stages
        (["evaluate", *M, "--no-cache"], "10000/10000"),
        (["top-examples", *M, "--layer", "conv1", "--unit", "0", "--out", "o"], "10000/10000"),
        (["features", *M, "--layer", "conv1", "--units", "0-2", "--steps", "3", *OUT], "3/3"),
        (["train", "--dry-run", *M, "--run-dir", "run"], "20/20"),
        (["embed", "--method", "pca", "--out", "o"], "9/9"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_long_commands_draw_a_bar_on_stderr(
    argv, drawn, terminal, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    assert drawn in terminal.getvalue(), terminal.getvalue()
    out = capsys.readouterr().out
    assert "━" not in out and drawn not in out  # results stay clean on stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["unused", *M, "--layers", "fc1", "--json"],
        ["evaluate", *M, "--no-cache", "--json"],
    ],
    ids=lambda v: v[0],
)
def test_json_draws_no_bar(argv, terminal, tmp_path, monkeypatch, capsys) -> None:
    import json

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    assert terminal.getvalue() == ""
    json.loads(capsys.readouterr().out)


def test_analysis_reports_images_done() -> None:
    """unit_scores and report call progress(done, total) after each batch."""
    import torch

    from cnnscope.analysis.evaluation import report
    from cnnscope.analysis.features import unit_scores
    from cnnscope.models import build_model

    torch.manual_seed(0)
    model = build_model("lenet5")
    images = torch.randint(0, 256, (25, 28, 28), dtype=torch.uint8)
    calls: list[tuple[int, int]] = []
    unit_scores(model, images, "fc1", batch_size=10, progress=lambda *a: calls.append(a))
    assert calls == [(10, 25), (20, 25), (25, 25)]
    calls.clear()
    labels = torch.zeros(25, dtype=torch.long)
    report(model, images, labels, cache=False, progress=lambda *a: calls.append(a))
    assert calls == [(25, 25)]
