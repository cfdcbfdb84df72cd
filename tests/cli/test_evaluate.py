"""`cnnscope evaluate`: weights files, figures, corrupt files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnscope.cli import main


def test_evaluate_weights_file(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    main(["train", "--dry-run", "--model", "lenet5", "--run-dir", str(run), "--json"])
    trained = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--weights", str(run / "model.safetensors"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "lenet5" and out["count"] == 10_000
    assert out["accuracy"] == pytest.approx(trained["test_accuracy"], abs=1e-6)
    assert len(out["per_class_accuracy"]) == 10


def test_corrupt_weights_named(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    assert main(["evaluate", "--weights", str(bad)]) == 2
    assert "bad.safetensors" in capsys.readouterr().err


def test_evaluate_out_writes_figures_and_json(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", "lenet5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "precision" in text and "untrained" in text
    report = json.loads((out / "evaluation.json").read_text())
    assert report["count"] == 10_000 and len(report["confusion"]) == 10
    assert report["errors"] == len(report["most_confident_mistakes"])
    assert sum(map(sum, report["confusion"])) == 10_000
    for png in ("confusion.png", "mistakes.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["evaluate", "--model", "lenet5", "--json"]) == 0
    assert "from cache" not in capsys.readouterr().out  # --json prints only JSON
