"""Run folders: metrics.jsonl on resume (trimmed to the checkpoint, torn last line dropped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnscope.checkpoints import CheckpointError
from cnnscope.models import build_model
from cnnscope.train.runs import METRICS, MetricsLog, read_metrics


def _metrics(run: Path, *lines: str) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / METRICS).write_text("".join(line + "\n" for line in lines))
    return run / METRICS


def _record(step: int) -> str:
    return json.dumps({"step": step, "loss": 0.5, "accuracy": 0.9})


def _reopen(run: Path, start_step: int) -> None:
    MetricsLog(run, start_step, build_model("lenet5"), graph=False).close()


def test_resume_trims_records_after_the_checkpoint(tmp_path: Path) -> None:
    path = _metrics(tmp_path, *(_record(s) for s in (5, 10, 15)))
    _reopen(tmp_path, 10)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [5, 10]


def test_torn_last_line_dropped_with_a_warning(tmp_path: Path) -> None:
    # A crash mid-append: the last record stops in the middle of a number, no newline.
    path = _metrics(tmp_path, _record(5), _record(10))
    with open(path, "a") as f:
        f.write('{"step": 15, "loss": 0.4')
    with pytest.warns(RuntimeWarning, match=r"metrics\.jsonl: dropped its torn last line"):
        _reopen(tmp_path, 10)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [5, 10]


@pytest.mark.parametrize("bad", ['{"step": 7, "lo', "[1, 2]", '{"loss": 1}', '{"step": "7"}'])
def test_damage_before_the_last_line_is_an_error(tmp_path: Path, bad: str) -> None:
    path = _metrics(tmp_path, _record(5), bad, _record(10))
    with pytest.raises(CheckpointError, match=r"metrics\.jsonl: line 2 is not a metrics record"):
        read_metrics(path)


def test_whole_file_reads_back(tmp_path: Path) -> None:
    path = _metrics(tmp_path, _record(5), "", _record(10))
    assert [step for step, _ in read_metrics(path)] == [5, 10]
