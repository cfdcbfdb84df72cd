from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cnnscope.analysis.snapshots import load_snapshots
from cnnscope.checkpoints import CheckpointError, load_weights
from cnnscope.train import Callback, TrainConfig, TrainState, fit, loop
from tests.support.training import InterruptAt, small_config


@pytest.mark.slow
def test_learns_on_a_small_subset(tmp_path: Path, mnist) -> None:
    config = small_config(tmp_path, model="deep_mnist", epochs=1, train_limit=3000, batch_size=64)
    result = fit(config, data=mnist)
    # Chance is 10 %; one short epoch on 3,000 digits gets well past 85 %.
    assert result.metrics["test_accuracy"] > 0.85
    _, meta = load_weights(result.weights)
    assert meta["complete"] and meta["metrics"]["test_accuracy"] == result.metrics["test_accuracy"]
    assert meta["train_config"]["model"] == "deep_mnist"
    assert meta["data"]["sha256"] == mnist.checksum


def _metrics(config: TrainConfig) -> list[dict]:
    text = (Path(config.run_dir) / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("interrupt_at", [10, 13])  # an epoch boundary (10) and mid-epoch
def test_resume_ends_where_uninterrupted_run_ends(tmp_path: Path, mnist, interrupt_at) -> None:
    whole = fit(small_config(tmp_path / "a"), data=mnist)
    config = small_config(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        fit(config, [InterruptAt(interrupt_at)], data=mnist)
    resumed = fit(config, resume=True, data=mnist)
    assert resumed.steps == whole.steps == 20
    for (k, a), (_, b) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    lines = _metrics(config)
    assert [m["step"] for m in lines if m["split"] == "train"] == [5, 10, 15, 20]  # no repeats
    assert [m["step"] for m in lines if m["split"] == "validation"] == [10, 20]


class _KeepWeights(Callback):
    """The model's weights after each step, before any later callback can stop the run."""

    def __init__(self) -> None:
        self.at: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, state: TrainState) -> None:
        self.at[state.step] = {k: v.clone() for k, v in state.model.state_dict().items()}


def test_a_stop_writes_the_weights_of_its_step(tmp_path: Path, mnist) -> None:
    config = small_config(tmp_path)  # 10 steps an epoch: a checkpoint at step 10
    kept = _KeepWeights()
    with pytest.raises(KeyboardInterrupt):
        fit(config, [kept, InterruptAt(13)], data=mnist)
    model, meta = load_weights(Path(config.run_dir) / "model.safetensors")
    assert meta["complete"] is False
    assert meta["metrics"] == {
        "steps": 13,
        "stopped": True,
        "validation_accuracy": meta["metrics"]["validation_accuracy"],
        "validation_step": 10,  # the figure is the checkpoint's, and says so
    }
    for k, v in model.state_dict().items():
        assert torch.equal(v, kept.at[13][k]), k  # the stop step's weights…
    assert not torch.equal(model.fc1.weight, kept.at[10]["fc1.weight"])  # …not step 10's
    # Weights and state agree; the run resumes to its end.
    resumed = fit(config, resume=True, data=mnist)
    assert resumed.steps == 20 and load_weights(resumed.weights)[1]["complete"]


class _OutputDtypes(Callback):
    """The dtype of the model's output at each forward pass, with the mode it ran in."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, torch.dtype]] = []

    def on_train_begin(self, state: TrainState) -> None:
        state.model.register_forward_hook(
            lambda module, _inputs, out: self.seen.append((module.training, out.dtype))
        )


@pytest.mark.parametrize(
    ("precision", "native", "ran"),
    [
        ("fp32", True, "fp32"),
        ("bf16", False, "bf16"),
        ("auto", True, "bf16"),  # a CPU with AMX or AVX-512 BF16
        ("auto", False, "fp32"),  # elsewhere bfloat16 is emulated: slower
    ],
)
def test_precision_of_the_training_forward(
    tmp_path: Path, mnist, monkeypatch, precision, native, ran
) -> None:
    monkeypatch.setattr(loop, "native_bf16", lambda device: native)
    dtypes = _OutputDtypes()
    config = small_config(tmp_path, precision=precision, epochs=1, snapshot_size=0)
    result = fit(config, [dtypes], data=mnist)
    train = {dtype for training, dtype in dtypes.seen if training}
    evaluation = {dtype for training, dtype in dtypes.seen if not training}
    # The 10 training steps run in the precision asked for; validation and test in float32.
    assert train == {torch.bfloat16 if ran == "bf16" else torch.float32}
    assert evaluation == {torch.float32}
    assert sum(training for training, _ in dtypes.seen) == 10
    # The weights stay float32, and the run records the precision that ran with them.
    model, meta = load_weights(result.weights)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert meta["train_config"]["precision"] == ran


def test_auto_precision_resumes(tmp_path: Path, mnist) -> None:
    config = small_config(tmp_path, precision="auto")
    with pytest.raises(KeyboardInterrupt):
        fit(config, [InterruptAt(4)], data=mnist)
    assert fit(config, resume=True, data=mnist).steps == 20


def test_a_state_saved_before_precision_existed_resumes_as_fp32(tmp_path: Path, mnist) -> None:
    config = small_config(tmp_path, precision="fp32")
    with pytest.raises(KeyboardInterrupt):
        fit(config, [InterruptAt(4)], data=mnist)
    state = Path(config.run_dir) / "state.safetensors"
    with safe_open(state, "pt") as f:
        (key, text), *_ = f.metadata().items()
    header = json.loads(text)
    del header["info"]["config"]["precision"]
    save_file(load_file(state), state, metadata={key: json.dumps(header)})
    assert fit(config, resume=True, data=mnist).steps == 20
    refused = r"other settings \(precision 'fp32' saved, 'bf16' given\)"
    with pytest.raises(CheckpointError, match=refused):
        fit(small_config(tmp_path, precision="bf16"), resume=True, data=mnist)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_optimizer_fused_where_torch_has_it(tmp_path: Path, mnist, optimizer, monkeypatch) -> None:
    # torch ≥ 2.4 has fused CPU steps of all three; 2.3 (the declared floor) of none.
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    config = small_config(tmp_path, optimizer=optimizer, snapshot_size=0)
    fused = loop._Run(config, mnist, resume=False)
    assert bool(fused.optimizer.defaults.get("fused")) == ((major, minor) >= (2, 4))
    for _ in range(3):
        fused.step()
    # The same run with torch's unfused step (the same seed: the same weights and dropout)
    # ends at the same weights, to float rounding.
    monkeypatch.setattr(loop, "fused_step_runs", lambda kind, device_type: False)
    plain = loop._Run(
        dataclasses.replace(config, run_dir=str(tmp_path / "plain")), mnist, resume=False
    )
    assert not plain.optimizer.defaults.get("fused")
    for _ in range(3):
        plain.step()
    fused.log.close()
    plain.log.close()
    for k, v in fused.model.state_dict().items():
        torch.testing.assert_close(v, plain.model.state_dict()[k], rtol=1e-4, atol=1e-5)


def test_resume_with_other_settings_refused(tmp_path: Path, mnist) -> None:
    config = small_config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        fit(config, [InterruptAt(4)], data=mnist)
    other = small_config(tmp_path, lr=0.1)
    with pytest.raises(CheckpointError, match=r"other settings \(lr 0\.004 saved, 0\.1 given\)"):
        fit(other, resume=True, data=mnist)


@pytest.mark.slow
def test_same_seed_same_weights_other_seed_differs(tmp_path: Path, mnist) -> None:
    a = fit(small_config(tmp_path / "a", epochs=1), data=mnist).model
    b = fit(small_config(tmp_path / "b", epochs=1), data=mnist).model
    c = fit(small_config(tmp_path / "c", epochs=1, seed=1), data=mnist).model
    assert torch.equal(a.fc1.weight, b.fc1.weight)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


@pytest.mark.slow
def test_run_folder_contents(tmp_path: Path, mnist) -> None:
    config = small_config(tmp_path)
    fit(config, data=mnist)
    run = Path(config.run_dir)
    lines = _metrics(config)
    splits = [line["split"] for line in lines]
    assert splits.count("validation") == 2 and splits[-1] == "test"
    assert all({"step", "accuracy", "cross_entropy"} <= set(line) for line in lines)

    snaps = load_snapshots(run / "snapshots")
    # steps 0 and 3, epoch ends 10 and 20 (steps_per_epoch = 500 // 50)
    assert snaps.steps == [0, 3, 10, 20]
    assert snaps.stages["fc1"][0].shape == (64, 128)
    assert snaps.stages["logits"][-1].shape == (64, 10)
    assert (
        len(snaps.indices) == 64
        and (snaps.labels == mnist.test_labels[snaps.indices].numpy()).all()
    )


@pytest.mark.slow
def test_tensorboard_events_readable(tmp_path: Path, mnist) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = small_config(tmp_path, epochs=1)
    fit(config, data=mnist)
    acc = EventAccumulator(str(Path(config.run_dir) / "tb"))
    acc.Reload()
    tags = acc.Tags()
    assert {"accuracy", "cross_entropy", "validation/accuracy"} <= set(tags["scalars"])
    assert tags["graph"]
    assert [e.step for e in acc.Scalars("accuracy")] == [5, 10]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("batch_size", 0, "batch_size"),
        ("optimizer", "rmsprop", "optimizer"),
        ("model", "x", "valid"),
        ("precision", "fp16", "precision: auto, fp32, bf16"),
    ],
)
def test_invalidsmall_config(tmp_path: Path, field, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        fit(small_config(tmp_path, **{field: value}))


def test_unknown_recipe() -> None:
    with pytest.raises(ValueError, match="valid: fast, seed, best"):
        TrainConfig.from_recipe("slow")


@pytest.mark.parametrize(
    "bad",
    [
        {"snapshot_size": -1},
        {"seed": -3},
        {"lr": float("nan")},
        {"epochs": float("inf")},
        {"epochs": 1e308},  # finite, but × steps per epoch it was an OverflowError traceback
    ],
)
def test_config_refuses_negative_counts_and_non_finite_numbers(bad) -> None:
    with pytest.raises(ValueError, match="invalid TrainConfig"):
        TrainConfig(**bad).validate()


class _FirstBatches(Callback):
    """The images of each training forward pass."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def on_train_begin(self, state: TrainState) -> None:
        def keep(module, inputs) -> None:
            if module.training:
                self.seen.append(inputs[0].detach().clone())

        state.model.register_forward_pre_hook(keep)


@pytest.mark.slow
def test_augment_warps_the_batches_reproducibly_and_resumes(tmp_path: Path, mnist) -> None:
    plain, warped = _FirstBatches(), _FirstBatches()
    base = {"epochs": 1, "snapshot_size": 0}
    fit(small_config(tmp_path / "plain", **base), [plain], data=mnist)
    whole = fit(small_config(tmp_path / "a", augment=True, **base), [warped], data=mnist)
    # The same digits in the same order (the shuffle is the seed's), each warped: moved,
    # turned and scaled by 0.9–1.1, so its ink by 0.81–1.21 (less what leaves the frame).
    for p, w in zip(plain.seen, warped.seen, strict=True):
        assert p.shape == w.shape and not torch.allclose(p, w, atol=0.05)
        ink = w.sum((1, 2, 3)) / p.sum((1, 2, 3))
        assert float(ink.min()) > 0.75 and float(ink.max()) < 1.22
    # Seeded by (seed, step): an interrupted and resumed run ends where the whole one ends.
    config = small_config(tmp_path / "b", augment=True, **base)
    with pytest.raises(KeyboardInterrupt):
        fit(config, [InterruptAt(7)], data=mnist)
    resumed = fit(config, resume=True, data=mnist)
    for (k, a), (_, b) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
