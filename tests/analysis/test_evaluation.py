from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from cnnscope.analysis.evaluation import (
    confusion_matrix,
    per_class_metrics,
    report,
    untrained_accuracy,
)
from cnnscope.models import build_model
from cnnscope.store import fingerprint


def test_confusion_matrix_equals_sklearn() -> None:
    rng = np.random.default_rng(0)
    true, pred = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    assert (confusion_matrix(true, pred) == sk_confusion(true, pred, labels=range(10))).all()


def test_per_class_metrics_hand_example() -> None:
    true = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 0])
    m = per_class_metrics(confusion_matrix(true, pred, n=4))
    # class 0: tp 2, predicted 3, actual 3; class 1: tp 1, predicted 2, actual 2;
    # class 2: tp 0; class 3: absent and never predicted.
    assert m["precision"] == pytest.approx([2 / 3, 1 / 2, 0, 0])
    assert m["recall"] == pytest.approx([2 / 3, 1 / 2, 0, 0])
    assert m["f1"] == pytest.approx([2 / 3, 1 / 2, 0, 0])
    assert m["support"] == [3, 2, 1, 0]
    p, _, f, _ = precision_recall_fscore_support(true, pred, labels=range(4), zero_division=0)
    assert m["precision"] == pytest.approx(p) and m["f1"] == pytest.approx(f)


def test_report_on_a_small_split(mnist, tmp_path: Path) -> None:
    model = build_model("lenet5")
    images, labels = mnist.test_images[:300], mnist.test_labels[:300]
    rep = report(model, images, labels, cache_dir=tmp_path)
    assert not rep.cached and rep.seconds > 0
    assert rep.confusion.sum() == 300
    assert rep.accuracy == pytest.approx(np.trace(rep.confusion) / 300)
    assert np.allclose(rep.confusion_normalized.sum(1)[rep.confusion.sum(1) > 0], 1)
    mistakes = rep.mistakes()
    assert len(mistakes) == 300 - np.trace(rep.confusion)
    assert [m.confidence for m in mistakes] == sorted(
        (m.confidence for m in mistakes), reverse=True
    )
    assert all(m.true != m.pred and labels[m.index] == m.true for m in mistakes)
    t, p = mistakes[0].true, mistakes[0].pred
    cell = rep.cell(t, p)
    assert mistakes[0].index in cell and len(cell) == rep.confusion[t, p]
    summary = rep.as_dict(mistakes=5)
    assert len(summary["most_confident_mistakes"]) == min(5, len(mistakes))

    again = report(model, images, labels, cache_dir=tmp_path)
    assert again.cached and np.array_equal(again.probabilities, rep.probabilities)
    # A damaged cache entry is recomputed rather than trusted or fatal.
    for f in tmp_path.iterdir():
        f.write_bytes(b"junk")
    assert not report(model, images, labels, cache_dir=tmp_path).cached


def test_fingerprint_changes_with_weights() -> None:
    a = build_model("lenet5")
    before = fingerprint(a)
    with torch.no_grad():
        a.logits.bias[0] += 1
    assert fingerprint(a) != before


def test_untrained_baseline_near_chance_and_rng_untouched(mnist) -> None:
    model = build_model("hvass")
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    acc = untrained_accuracy(model, mnist.test_images[:1000], mnist.test_labels[:1000])
    assert torch.equal(torch.rand(1), expected)
    assert 0.0 <= acc < 0.3


def test_untrained_baseline_is_cached_like_any_model(tmp_path, monkeypatch, mnist) -> None:
    # A cached evaluation took 6 s on the page: the baseline was recomputed every time.
    from cnnscope.analysis import evaluation

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = build_model("lenet5")
    images, labels = mnist.test_images[:300], mnist.test_labels[:300]
    first = evaluation.untrained_accuracy(model, images, labels, seed=1)

    def no_forward(*_a, **_k):  # type: ignore[no-untyped-def]
        raise AssertionError("the baseline ran the test set again")

    monkeypatch.setattr(evaluation, "predict", no_forward)
    assert evaluation.untrained_accuracy(model, images, labels, seed=1) == first


def test_report_of_a_four_class_model_names_its_classes(tmp_path: Path) -> None:
    """K = 4 outputs: a 4×4 matrix equal to scikit-learn's, named; labels ≥ K refused."""
    from cnnscope.analysis.evaluation import evaluate
    from cnnscope.models import num_classes

    model = build_model("lenet5", num_classes=4).eval()
    assert num_classes(model) == 4
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (60, 28, 28), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 4, 60))
    names = ["bar", "pillar", "cross", "ring"]
    rep = report(model, images, labels, cache=False, classes=names)
    assert rep.confusion.shape == (4, 4) and rep.classes == names
    want = sk_confusion(labels.numpy(), rep.predictions, labels=range(4))
    assert (rep.confusion == want).all()
    assert rep.as_dict()["classes"] == names
    assert len(evaluate(model, images, labels).per_class_accuracy) == 4
    assert report(model, images, labels, cache=False).classes == ["0", "1", "2", "3"]
    with pytest.raises(ValueError, match="label 4 but the model has only 4 outputs"):
        report(model, images, torch.full((60,), 4), cache=False)
    with pytest.raises(ValueError, match="names 3 classes"):
        report(model, images, labels, cache=False, classes=names[:3])


def test_cached_report_hashes_neither_weights_nor_images_again(tmp_path, monkeypatch, mnist):
    """A cold server's first cached evaluation took 149 ms: it hashed the 13 MB of weights
    (the server already knows their fingerprint) and the test set again, and built and
    hashed a fresh model for the untrained baseline. Now none of that on a cache hit."""
    from cnnscope.analysis import evaluation

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = build_model("lenet5")
    images, labels = mnist.test_images[:300].clone(), mnist.test_labels[:300]
    key = fingerprint(model)
    first = report(model, images, labels, weights_key=key)
    base = untrained_accuracy(model, images, labels, seed=2)

    def refuse(*_a, **_k):  # type: ignore[no-untyped-def]
        raise AssertionError("hashed or built again on a cache hit")

    monkeypatch.setattr(evaluation, "fingerprint", refuse)
    sha256 = evaluation.hashlib.sha256

    def keys_only(data: bytes = b""):  # type: ignore[no-untyped-def]
        if len(data) > 10_000:  # the images' digest is kept; cache keys are hashed
            refuse()
        return sha256(data)

    monkeypatch.setattr(evaluation.hashlib, "sha256", keys_only)
    monkeypatch.setattr(type(model), "rebuild", refuse)
    again = report(model, images, labels, weights_key=key)
    assert again.cached and np.array_equal(again.probabilities, first.probabilities)
    assert untrained_accuracy(model, images, labels, seed=2) == base
    monkeypatch.undo()

    # Never stale: the baseline equals a fresh build's; another seed or set of options
    # is another entry (it predicts); an in-place edit of the images is hashed again.
    with torch.random.fork_rng():
        torch.manual_seed(2)
        assert base == report(build_model("lenet5"), images, labels, cache=False).accuracy
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    predict = evaluation.predict
    monkeypatch.setattr(evaluation, "predict", lambda *a, **k: calls.append(1) or predict(*a, **k))
    untrained_accuracy(model, images, labels, seed=3)
    untrained_accuracy(build_model("lenet5", num_classes=4), images, labels % 4, seed=2)
    assert len(calls) == 2
    images[0] = 255 - images[0]
    assert not report(model, images, labels, weights_key=key).cached
    assert len(calls) == 3
