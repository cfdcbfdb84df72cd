from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnscope.checkpoints import load_weights
from cnnscope.cli import main


def test_models_json(capsys) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["deep_mnist", "hvass", "single_conv", "lenet5"]
    deep = rows[0]
    assert deep["stages"]["pool2"] == [64, 7, 7] and deep["parameters"] == 3_274_634
    assert deep["shipped_test_accuracy"] >= 0.992


def test_data_command(capsys) -> None:
    assert main(["data", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["train"], info["validation"], info["test"]) == (55_000, 5_000, 10_000)


def test_train_dry_run_then_resume(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["train", "--dry-run", "--model", "lenet5", "--run-dir", str(run), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 20 and 0 <= out["test_accuracy"] <= 1
    _, meta = load_weights(run / "model.safetensors", expect="lenet5")
    assert meta["train_config"]["steps"] == 20
    assert (run / "state.safetensors").exists() and (run / "metrics.jsonl").exists()
    # Resuming a finished run does no more steps and ends at the same place.
    assert main([*args, "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 20


def test_train_flags_map_onto_config(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    argv = [
        "train",
        "--dry-run",
        "--model",
        "hvass",
        "--lr",
        "0.01",
        "--optimizer",
        "sgd",
        "--steps",
        "3",
        "--run-dir",
        str(run),
        "--json",
    ]
    assert main(argv) == 0
    meta = json.loads((run / "model.json").read_text())
    cfg = meta["train_config"]
    assert (cfg["lr"], cfg["optimizer"], cfg["steps"], cfg["model"]) == (0.01, "sgd", 3, "hvass")


def test_evaluate_weights_file(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    main(["train", "--dry-run", "--model", "lenet5", "--run-dir", str(run), "--json"])
    trained = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--weights", str(run / "model.safetensors"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "lenet5" and out["count"] == 10_000
    assert out["accuracy"] == pytest.approx(trained["test_accuracy"], abs=1e-6)
    assert len(out["per_class_accuracy"]) == 10


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


def test_corrupt_weights_named(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    assert main(["evaluate", "--weights", str(bad)]) == 2
    assert "bad.safetensors" in capsys.readouterr().err


def test_serve_binds_loopback_and_warns_otherwise(monkeypatch, capsys) -> None:
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    assert main(["serve", "--port", "8123"]) == 0
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8123
    out = capsys.readouterr()
    assert "http://127.0.0.1:8123/" in out.out and "warning" not in out.err
    assert main(["serve", "--host", "0.0.0.0", "--model", "lenet5"]) == 0
    err = capsys.readouterr().err
    assert calls[-1]["host"] == "0.0.0.0" and "warning: binding 0.0.0.0" in err


def test_serve_without_shipped_weights_says_how(monkeypatch, capsys, tmp_path) -> None:
    from cnnscope import store

    monkeypatch.setattr(store, "SHIPPED_DIR", tmp_path)
    assert main(["serve", "--model", "hvass"]) == 2
    assert "cnnscope train --model hvass" in capsys.readouterr().err


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


def test_explain_test_index_and_image_file(tmp_path: Path, capsys) -> None:
    import numpy as np
    from PIL import Image

    out = tmp_path / "x"
    assert main(["explain", "--test-index", "0", "--method", "saliency", "--out", str(out)]) == 0
    payload = json.loads((out / "attribution.json").read_text())
    assert payload["attributions"][0]["method"] == "saliency"
    assert np.array(payload["attributions"][0]["map"]).shape == (28, 28)
    # A scan: dark ink on white paper, large. It is inverted and preprocessed.
    paper = np.full((200, 150), 255, np.uint8)
    paper[30:170, 70:80] = 0  # a 1
    Image.fromarray(paper).save(tmp_path / "one.png")
    assert (
        main(
            [
                "explain",
                "--image",
                str(tmp_path / "one.png"),
                "--method",
                "gradcam",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "predicted 1" in capsys.readouterr().out
    assert (out / "attribution.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", "--test-index", "5", "--target", "10"], "outside 0–9"),
        (["explain", "--test-index", "10000"], "outside 0–9999"),
        (["explain", "--image", "missing.png"], "not a readable image"),
    ],
)
def test_explain_errors(argv, message, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--out", "o"]) == 2
    assert message in capsys.readouterr().err
