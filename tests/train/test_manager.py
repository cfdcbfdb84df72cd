"""The run manager without processes: statuses read from folders, requests checked, tails."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cnnscope.train.manager import (
    MAX_STEPS,
    TRAIN_IMAGES,
    InvalidRun,
    RunConflict,
    RunManager,
    Tail,
    UnknownRun,
)


def _folder(root: Path, run_id: str, files: dict[str, str], pid: int | None = None) -> Path:
    folder = root / run_id
    folder.mkdir(parents=True)
    settings = {"model": "hvass", "recipe": "fast", "steps": 30, "seed": 0}
    record = {"id": run_id, "settings": settings, "created": "2026-01-01T00:00:00", "pid": pid}
    (folder / "run.json").write_text(json.dumps(record))
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_status_of_runs_left_in_the_folder(tmp_path: Path) -> None:
    done_meta = json.dumps({"complete": True, "metrics": {"steps": 30}})
    _folder(tmp_path, "hvass-20260101-000000", {"model.safetensors": "x", "model.json": done_meta})
    _folder(tmp_path, "hvass-20260101-000001", {"state.safetensors": "x"}, pid=2**22 + 7)
    _folder(tmp_path, "hvass-20260101-000002", {"metrics.jsonl": ""})
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "hvass-20260101-000003").mkdir()  # no run.json: not listed
    _folder(tmp_path, "hvass-20260101-000004", {}).joinpath("run.json").write_text("{oops")
    m = RunManager(tmp_path)
    statuses = {r.id: m.status(r) for r in m.runs()}
    assert statuses == {
        "hvass-20260101-000000": "done",
        "hvass-20260101-000001": "stopped",  # its process is gone, a checkpoint is there
        "hvass-20260101-000002": "failed",  # gone with nothing to resume from
    }
    with pytest.raises(RunConflict, match="done"):
        m.resume("hvass-20260101-000000")
    with pytest.raises(RunConflict, match="stopped, not training"):
        m.stop("hvass-20260101-000001")
    with pytest.raises(UnknownRun, match="hvass-20260101-000000"):
        m.get("../hvass-20260101-000000")


def test_resolve_checks_every_field(tmp_path: Path) -> None:
    m = RunManager(tmp_path)
    assert m.resolve("hvass", steps=40, seed=3) == {
        "model": "hvass", "recipe": "fast", "steps": 40, "seed": 3,
    }  # fmt: skip
    assert m.resolve("hvass", epochs=1)["steps"] == TRAIN_IMAGES // 128
    assert m.resolve("hvass", "seed")["steps"] == 20_000  # the recipe's own length
    for kwargs, field in [
        ({"model": "vgg"}, "model"),
        ({"model": "hvass", "recipe": "x"}, "recipe"),
        ({"model": "hvass", "steps": 0}, "steps"),
        ({"model": "hvass", "steps": MAX_STEPS + 1}, "steps"),
        ({"model": "hvass", "epochs": -1.0}, "epochs"),
        ({"model": "hvass", "epochs": 500.0}, "epochs"),
        ({"model": "hvass", "steps": 5, "epochs": 1.0}, "steps"),
        ({"model": "hvass", "seed": -1}, "seed"),
    ]:
        with pytest.raises(InvalidRun) as e:
            m.resolve(**kwargs)
        assert e.value.field == field, kwargs


def test_tail_reports_each_record_once(tmp_path: Path) -> None:
    lines = [
        {"step": 10, "split": "train", "accuracy": 0.3, "seconds": 1.0},
        {"step": 20, "split": "train", "accuracy": 0.6, "seconds": 2.0},
    ]
    metrics = "".join(json.dumps(x) + "\n" for x in lines)
    folder = _folder(tmp_path, "hvass-20260101-000000", {"metrics.jsonl": metrics})
    index = {"snapshots": [{"step": 0, "epoch": 0.0, "subset_accuracy": 0.1}]}
    (folder / "snapshots").mkdir()
    (folder / "snapshots" / "index.json").write_text(json.dumps(index))
    (folder / "state.safetensors").write_text("x")
    m = RunManager(tmp_path)
    tail = Tail(m, m.get("hvass-20260101-000000"))
    events = tail.poll()
    names = [n for n, _ in events]
    assert names == ["metrics", "metrics", "snapshot", "progress"]
    progress = events[-1][1]
    assert progress["status"] == "stopped" and progress["step"] == 20
    assert progress["steps_per_s"] == 10.0  # 10 steps in 1 s
    assert tail.finished  # stopped: the stream ends
    with (folder / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 30, "split": "train", "seconds": 3.0}) + "\n{torn")
    assert [n for n, _ in tail.poll()] == ["metrics", "progress"]
    assert tail.poll() == []


@pytest.mark.slow
def test_a_run_that_cannot_start_fails_with_its_error(tmp_path: Path) -> None:
    m = RunManager(tmp_path / "runs", data_dir=str(tmp_path / "no-mnist-here"))
    run = m.start("hvass", steps=5)
    deadline = time.monotonic() + 60
    while m.active() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert m.status(run) == "failed"
    error = m.error(run)
    assert error and "no-mnist-here" in error  # the CLI's one line: the folder and the fix
    events = Tail(m, run).poll()
    assert ("error", {"message": error}) in events
    # The folder keeps what it had: the request and the log, for a look or a resume.
    assert {p.name for p in run.folder.iterdir()} >= {"run.json", "train.log"}


def test_your_own_model_runs_with_its_spec_normalize_and_input_size(tmp_path: Path) -> None:
    m = RunManager(tmp_path)
    spec = "models/net.py:My-Net"
    settings = m.resolve(spec, steps=40, normalize=(0.1307, 0.3081), input_size=(28, 28))
    assert settings == {
        "model": spec, "recipe": "fast", "steps": 40, "seed": 0,
        "normalize": [0.1307, 0.3081], "input_size": [28, 28],
    }  # fmt: skip
    folder = _folder(tmp_path, "my_net-20260101-000000", {})
    (folder / "run.json").write_text(
        json.dumps({"settings": settings, "created": "2026-01-01T00:00:00"})
    )
    run = RunManager(tmp_path).get("my_net-20260101-000000")
    command = RunManager(tmp_path).command(run)
    flags = {command[i]: command[i + 1] for i in range(3, len(command) - 1)}
    assert flags["--model"] == spec and flags["--input-size"] == "28,28"
    assert flags["--normalize"] == "0.1307,0.3081"
    assert run.config.model == spec
    with pytest.raises(InvalidRun) as e:
        m.resolve("hvass", steps=5, normalize=(0.5, 0.5))
    assert e.value.field == "model"
