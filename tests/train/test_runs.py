"""Run folders: metrics.jsonl on resume (trimmed to the checkpoint, torn last line dropped)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def _events(run: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"), size_guidance={"histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """Two short epochs of hvass: 10 steps each, a train record every 5."""
    from cnnscope.data import load_mnist
    from cnnscope.train import TrainConfig, fit

    run = tmp_path_factory.mktemp("tb") / "run"
    config = TrainConfig.from_recipe(
        "fast",
        model="hvass",
        epochs=2,
        batch_size=50,
        train_limit=500,
        run_dir=str(run),
        log_every=5,
        snapshot_size=0,
    )
    result = fit(config, data=load_mnist(download=False))
    return run, result


def test_tensorboard_learning_rate_follows_the_schedule(trained) -> None:
    run, _ = trained
    acc = _events(run)
    lr = acc.Scalars("learning_rate")
    assert [e.step for e in lr] == [5, 10, 15, 20]
    logged = [json.loads(line) for line in (run / METRICS).read_text().splitlines()]
    expected = [r["lr"] for r in logged if r.get("split") == "train"]
    assert [e.value for e in lr] == pytest.approx(expected, rel=1e-6)
    assert lr[0].value > lr[-1].value  # one-cycle: annealed by the end


def test_tensorboard_train_and_validation_share_a_chart(trained) -> None:
    from tensorboard.plugins.custom_scalar import layout_pb2

    run, _ = trained
    acc = _events(run)
    (event,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert charts["accuracy"] == ["^accuracy$", "^validation/accuracy$", "^test/accuracy$"]
    # The tags the chart draws all exist.
    scalars = set(acc.Tags()["scalars"])
    drawn = {"accuracy", "validation/accuracy", "cross_entropy", "validation/cross_entropy"}
    assert drawn <= scalars


def test_tensorboard_histograms_per_validation(trained) -> None:
    run, _ = trained
    acc = _events(run)
    tags = set(acc.Tags()["histograms"])
    assert {"weights/conv1", "weights/conv2", "weights/fc1", "weights/logits"} <= tags
    assert {"activations/relu1", "activations/relu2", "activations/fc1"} <= tags
    # Once per epoch end, though the last one is validated twice (epoch end and finish).
    assert [e.step for e in acc.Histograms("weights/conv1")] == [10, 20]
    assert [e.step for e in acc.Histograms("activations/relu1")] == [10, 20]
    relu = acc.Histograms("activations/relu1")[-1].histogram_value
    assert relu.min >= 0 and relu.num == 32 * 16 * 28 * 28  # 32 images after a ReLU
    weights = acc.Histograms("weights/fc1")
    assert weights[0].histogram_value.sum != weights[1].histogram_value.sum  # trained between


def test_tensorboard_hparams_hold_the_settings_and_final_metrics(trained) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    run, result = trained
    acc = _events(run)
    content = acc.PluginTagToContent("hparams")
    data = {tag: plugin_data_pb2.HParamsPluginData.FromString(raw) for tag, raw in content.items()}
    experiment = data["_hparams_/experiment"].experiment
    assert {m.name.tag for m in experiment.metric_infos} == {
        "test/accuracy",
        "test/cross_entropy",
        "validation/accuracy",
        "validation/cross_entropy",
    }
    session = data["_hparams_/session_start_info"].session_start_info
    assert session.hparams["model"].string_value == "hvass"
    assert session.hparams["batch_size"].number_value == 50
    final = acc.Scalars("test/accuracy")[-1].value
    assert final == pytest.approx(result.metrics["test_accuracy"])


def test_metrics_log_releases_its_hooks(tmp_path: Path) -> None:
    model = build_model("lenet5")
    log = MetricsLog(tmp_path, 0, model, graph=False)
    log.write({"step": 1, "accuracy": 0.5, "cross_entropy": 2.0, "lr": 0.1})
    hooked = [m for m in model.modules() if m._forward_hooks]
    assert hooked  # sampling activations for the histograms
    log.close()
    assert not [m for m in model.modules() if m._forward_hooks]
