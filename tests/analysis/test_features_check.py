"""The judges of class images, the faithfulness percentile, and ``features --check``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.analysis.features import METHODS, RenderConfig, config_for, render
from cnnscope.analysis.features import check as check_module
from cnnscope.analysis.features.check import Judges, check_class_images, judge_images
from cnnscope.analysis.features.objectives import channels
from cnnscope.cli import main
from cnnscope.data import to_float
from cnnscope.models import build_model
from cnnscope.store import cache_dir


def test_judges_read_mnist_and_are_cached(mnist) -> None:
    judges = Judges(mnist, n=2000)
    x = to_float(mnist.test_images[:500]).squeeze(1).numpy()
    y = mnist.test_labels[:500].numpy()
    assert (judges.logistic(x) == y).mean() > 0.8
    assert (judges.knn(x) == y).mean() > 0.8
    # The second is read from the user cache: the same weights, no training.
    assert list(cache_dir("judges").glob(f"{mnist.checksum[:16]}-train-n2000-s0.safetensors"))
    again = Judges(mnist, n=2000)
    assert torch.equal(again.w, judges.w) and torch.equal(again.b, judges.b)


def test_a_damaged_judges_cache_is_a_miss(mnist) -> None:
    (path,) = cache_dir("judges").glob("*-train-n2000-s0.safetensors") or [None]
    if path is None:
        Judges(mnist, n=2000)
        (path,) = cache_dir("judges").glob("*-train-n2000-s0.safetensors")
    path.write_bytes(b"not safetensors")
    judges = Judges(mnist, n=2000)
    assert judges.w.shape == (784, 10) and path.stat().st_size > 1000  # written again


def test_percentile_is_the_own_logit_against_the_class_digits(mnist) -> None:
    model, _ = cnnscope.load_model("deep_mnist")
    judges = Judges(mnist, n=2000)
    with torch.no_grad():
        logits = model(to_float(mnist.test_images))
    labels = mnist.test_labels
    # For each class its most exciting test digit: it beats every other digit of its class.
    best = [int(torch.nonzero(labels == k)[logits[labels == k, k].argmax()]) for k in range(10)]
    images = to_float(mnist.test_images[best]).squeeze(1).numpy()
    r = judge_images(model, images, mnist, judges, "real")
    count = [(labels == k).sum().item() for k in range(10)]
    # (c − 1)/c or 1: a batch of one may round its own logit a hair above the batched one
    assert all((c - 1) / c - 1e-9 <= p <= 1 for p, c in zip(r.percentile, count, strict=True))
    # A class's median digit beats half of its class.
    median = []
    for k in range(10):
        idx = torch.nonzero(labels == k).squeeze(1)
        median.append(int(idx[logits[idx, k].argsort()[len(idx) // 2]]))
    images = to_float(mnist.test_images[median]).squeeze(1).numpy()
    mid = judge_images(model, images, mnist, judges, "median")
    assert mid.percentile == pytest.approx([0.5] * 10, abs=0.01) and mid.faithful == 0
    assert r.faithful == 10 and r.recognised == {"logistic": 10, "knn": 10}
    assert "recognised 10/10" in r.sentence() and "10/10 excite" in r.sentence()
    blank = judge_images(model, np.zeros((10, 28, 28), np.float32), mnist, judges, "blank")
    assert blank.faithful == 0 and blank.mean == 0 and blank.frame == 0
    assert json.loads(json.dumps(blank.as_dict()))["faithful"] == 0


def test_settle_phase_sees_the_image_untransformed() -> None:
    # With every step settling, jitter/scale/rotation/blur settings change nothing.
    torch.manual_seed(0)
    model = build_model("deep_mnist", conv1=2, conv2=3, hidden=8).eval()
    objective = channels("logits", [3, 7])
    moving = RenderConfig(steps=6, settle=1.0)
    still = replace(moving, jitter=0, scale=0.0, rotate=0.0, blur_every=0)
    assert np.array_equal(render(model, objective, 2, moving), render(model, objective, 2, still))
    assert not np.array_equal(
        render(model, objective, 2, replace(moving, settle=0.0)),
        render(model, objective, 2, still),
    )
    with pytest.raises(ValueError, match="settle"):
        RenderConfig(settle=1.5).validate()


def test_methods_are_listed_once() -> None:
    assert list(METHODS) == ["regularized", "prior", "plain"]
    assert config_for("plain").method == "plain" and config_for("plain").settle == 0
    assert config_for("plain").restarts == 1  # the tutorials' method, exactly
    with pytest.raises(ValueError, match="valid: regularized, prior, plain"):
        config_for("magic")


def test_features_check_cli(tmp_path: Path, capsys, monkeypatch) -> None:
    fast = {m: replace(config_for(m), steps=4) for m in METHODS}
    monkeypatch.setattr(check_module, "config_for", lambda m: fast[m])
    out = tmp_path / "check"
    assert main(["features", "--check", "--model", "lenet5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for m in METHODS:
        assert f"\n{m}" in text
    assert "faithful" in text and "border" in text
    payload = json.loads((out / "check.json").read_text())
    assert [p["method"] for p in payload] == list(METHODS)
    assert all(len(p["percentile"]) == 10 and 0 <= p["faithful"] <= 10 for p in payload)
    assert (out / "check.png").exists()
    assert main(["features", "--model", "lenet5"]) == 2
    assert "--layer" in capsys.readouterr().err


def test_check_class_images_accepts_named_configs(mnist) -> None:
    model = build_model("lenet5").eval()
    judges = Judges(mnist, n=2000)
    (r,) = check_class_images(model, mnist, judges, {"short": RenderConfig(steps=3)})
    assert r.method == "short" and r.images.shape == (10, 28, 28)
    assert r.images.min() >= 0 and r.images.max() <= 1
