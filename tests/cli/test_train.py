"""`cnnscope train`: dry runs, resume, flags onto TrainConfig."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnscope.checkpoints import load_weights
from cnnscope.cli import main


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


def test_train_threads_are_used_and_given_back(tmp_path: Path, capsys) -> None:
    import torch

    before = torch.get_num_threads()
    run = tmp_path / "run"
    args = ["train", "--dry-run", "--model", "lenet5", "--run-dir", str(run), "--json"]
    assert main([*args, "--threads", "1"]) == 0
    _, meta = load_weights(run / "model.safetensors", expect="lenet5")
    assert meta["threads"] == 1
    assert torch.get_num_threads() == before


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
        "--precision",
        "bf16",
        "--run-dir",
        str(run),
        "--json",
    ]
    assert main(argv) == 0
    meta = json.loads((run / "model.json").read_text())
    cfg = meta["train_config"]
    assert (cfg["lr"], cfg["optimizer"], cfg["steps"], cfg["model"]) == (0.01, "sgd", 3, "hvass")
    assert cfg["precision"] == "bf16"


@pytest.mark.filterwarnings("default::RuntimeWarning")
def test_resume_after_a_torn_metrics_line(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["train", "--dry-run", "--model", "lenet5", "--run-dir", str(run), "--json"]
    args += ["--steps", "10"]
    assert main(args) == 0
    capsys.readouterr()
    with open(run / "metrics.jsonl", "a") as f:  # a crash in the middle of an append
        f.write('{"step": 11, "loss": 0.')
    assert main([*args, "--resume"]) == 0
    err = capsys.readouterr().err
    torn = [line for line in err.splitlines() if "torn last line" in line]
    assert len(torn) == 1 and torn[0].startswith("cnnscope train: warning: "), err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["step"] <= 10 for r in records)


class _Captured(Exception):
    pass


@pytest.mark.parametrize(
    ("argv", "recipe"),
    [
        (["--model", "best"], "best"),  # the best model trains with its own recipe…
        (["--model", "best", "--recipe", "fast"], "fast"),  # …unless told
        (["--model", "best", "--no-augment"], "best"),
        (["--model", "lenet5"], "fast"),
        ([], "fast"),
    ],
)
def test_recipe_defaults_to_the_models_own(tmp_path: Path, monkeypatch, argv, recipe) -> None:
    import cnnscope.train

    seen = []

    def fake_fit(config, *args, **kwargs):
        seen.append(config)
        raise _Captured

    monkeypatch.setattr(cnnscope.train, "fit", fake_fit)
    with pytest.raises(_Captured):
        main(["train", *argv, "--run-dir", str(tmp_path / "run")])
    config = seen[0]
    assert config.recipe == recipe
    if recipe == "best":
        augment = "--no-augment" not in argv
        assert (config.augment, config.precision, config.batch_size) == (augment, "auto", 256)
    else:
        assert not config.augment


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_dry_run_never_writes_the_default_run(tmp_path: Path, monkeypatch, capsys) -> None:
    # `cnnscope train --dry-run` wrote 20 steps over runs/deep_mnist, a real run's weights.
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dry-run", "--model", "lenet5", "--json"]) == 0
    weights = Path(json.loads(capsys.readouterr().out)["weights"])
    assert not (tmp_path / "runs").exists()
    assert weights.name == "model.safetensors" and "cnnscope-dry-run-" in weights.parent.name


def test_a_run_is_not_replaced_unless_asked(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["train", "--dry-run", "--model", "lenet5", "--run-dir", str(run), "--json"]
    assert main([*args, "--steps", "6"]) == 0
    before = _digest(run / "model.safetensors")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a run already" in err and "--overwrite" in err
    assert _digest(run / "model.safetensors") == before  # nothing lost
    assert main([*args, "--overwrite"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 20
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # the old run's records went with it
    index = json.loads((run / "snapshots" / "index.json").read_text())
    assert max(s["step"] for s in index["snapshots"]) == 20


def test_resume_takes_the_runs_own_settings(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    first = ["train", "--dry-run", "--model", "lenet5", "--steps", "10", "--run-dir", str(run)]
    assert main([*first, "--json"]) == 0
    capsys.readouterr()
    # As the README and the interrupt message say: no other flag needed.
    assert main(["train", "--resume", "--run-dir", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 10
    assert main(["train", "--resume", "--run-dir", str(run), "--steps", "12"]) == 2
    err = capsys.readouterr().err
    assert "steps 10 saved, 12 given" in err and err.count("\n") == 1


def test_resume_refuses_another_recipe_and_takes_an_old_states_precision(
    tmp_path: Path, capsys
) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    first = ["train", "--dry-run", "--model", "lenet5", "--steps", "6", "--run-dir", str(run)]
    assert main([*first, "--precision", "fp32", "--json"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(run), "--recipe", "best"]) == 2
    assert "recipe 'fast' saved, 'best' given" in capsys.readouterr().err
    # A state from before `precision` existed: its run was fp32, whatever auto picks now.
    state = run / "state.safetensors"
    with safe_open(state, "pt") as f:
        (key, text), *_ = f.metadata().items()
    header = json.loads(text)
    del header["info"]["config"]["precision"]
    save_file(load_file(state), state, metadata={key: json.dumps(header)})
    assert main(["train", "--resume", "--run-dir", str(run), "--json"]) == 0


@pytest.mark.filterwarnings("default::RuntimeWarning")
def test_resume_without_a_state_starts_over(tmp_path: Path, capsys) -> None:
    # The page launches every run with --resume; weights left without their state (a kill
    # between the two writes) must not make the run unstartable.
    run = tmp_path / "run"
    args = ["train", "--dry-run", "--model", "lenet5", "--steps", "6", "--run-dir", str(run)]
    assert main([*args, "--json"]) == 0
    (run / "state.safetensors").unlink()
    capsys.readouterr()
    assert main([*args, "--resume", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["steps"] == 6 and "starting over" in out.err
