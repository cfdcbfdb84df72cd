"""The weights that ship in the package: they load, score, and carry their history."""

from __future__ import annotations

import json

import pytest

import cnnscope
from cnnscope.analysis.evaluation import evaluate
from cnnscope.analysis.snapshots import load_snapshots
from cnnscope.store import SHIPPED_DIR, shipped

pytestmark = pytest.mark.slow


def test_default_model_scores_at_least_99_2(mnist) -> None:
    model, meta = cnnscope.load_model()
    result = evaluate(model, mnist.test_images, mnist.test_labels)
    assert result.accuracy >= 0.992
    assert result.accuracy == pytest.approx(meta["metrics"]["test_accuracy"], abs=1e-6)
    assert meta["train_config"]["recipe"] == "fast"
    assert meta["data"]["sha256"] == mnist.checksum


@pytest.mark.parametrize("name", cnnscope.bundled_models())
def test_every_shipped_model_matches_its_metadata(name, mnist) -> None:
    model, meta = cnnscope.load_model(name)
    result = evaluate(model, mnist.test_images, mnist.test_labels)
    assert result.accuracy == pytest.approx(meta["metrics"]["test_accuracy"], abs=1e-6)
    assert result.accuracy >= 0.99
    curves = (shipped(name, "metrics.jsonl")).read_text().splitlines()
    assert json.loads(curves[-1])["split"] == "test"


def test_default_snapshots_ship_small_and_show_learning() -> None:
    path = shipped("deep_mnist", "snapshots.safetensors")
    assert path.stat().st_size < 4_000_000
    snaps = load_snapshots(path)
    assert snaps.steps[0] == 0 and len(snaps.steps) >= 8
    assert snaps.subset_accuracy[0] < 0.3 < 0.98 < snaps.subset_accuracy[-1]
    assert snaps.stages["fc1"][0].shape == (2000, 50)


def test_package_weights_stay_small() -> None:
    total = sum(f.stat().st_size for f in SHIPPED_DIR.iterdir())
    assert total <= 25_000_000


def test_best_model_reaches_99_6_with_weights_not_chosen_on_test() -> None:
    _, meta = cnnscope.load_model("best")  # its accuracy is re-measured by the test above
    metrics, config = meta["metrics"], meta["train_config"]
    assert metrics["test_accuracy"] >= 0.996
    assert (config["recipe"], config["augment"]) == ("best", True)
    assert metrics["train_seconds"] <= 20 * 60
    # The shipped weights are the run's last: its final validation line is theirs.
    curves = [
        json.loads(line) for line in shipped("best", "metrics.jsonl").read_text().splitlines()
    ]
    last = [c for c in curves if c["split"] == "validation"][-1]
    assert last["step"] == metrics["steps"]
    assert last["accuracy"] == metrics["validation_accuracy"]
