"""`cnnscope data`: checks and describes MNIST, an .npz with classes.txt, and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cnnscope.cli import main


def test_data_command(capsys) -> None:
    assert main(["data", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["train"], info["validation"], info["test"]) == (55_000, 5_000, 10_000)
    assert info["classes"] == [str(k) for k in range(10)] and info["format"] == "idx"
    assert info["test_counts"][:3] == [980, 1135, 1032]


def test_describes_npz_with_class_names(shapes_dir: Path, capsys) -> None:
    assert main(["data", "--data-dir", str(shapes_dir)]) == 0
    out = capsys.readouterr().out
    assert "(npz, checks passed)" in out and "28×28" in out and "classes: 4" in out
    lines = {
        line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")
    }
    assert lines["ring"] == ["80", "20"] and lines["bar"] == ["80", "20"]


def test_bad_npz_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    x = np.zeros((4, 8, 8), np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(3), x_test=x, y_test=np.arange(4))
    assert main(["data", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(tmp_path / "d.npz") in err and "x_train has 4 images but y_train 3 labels" in err
