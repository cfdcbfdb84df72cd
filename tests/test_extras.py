"""Optional packages: a missing one names its extra, and what can go on without it does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cnnscope._extras import EXTRAS, MissingExtra, require


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import module`` fail as if the package were not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_require_returns_the_module() -> None:
    assert require("json", "tsne") is json


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "sklearn", "sklearn.neighbors")
    with pytest.raises(MissingExtra, match=r"pip install 'cnnscope\[tsne\]'") as info:
        require("sklearn.neighbors", "tsne", "kNN accuracy")
    assert isinstance(info.value, ImportError)
    assert (info.value.module, info.value.extra) == ("sklearn", "tsne")
    assert str(info.value).startswith("kNN accuracy needs the optional package 'sklearn'")


def test_broken_dependency_inside_an_installed_package_is_not_hidden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The optional package is there but one of *its* imports fails: a broken install, shown
    # as it is rather than as "install the extra".
    (tmp_path / "_cnnscope_fake_opt.py").write_text("import _cnnscope_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require("_cnnscope_fake_opt", "tsne")
    assert not isinstance(info.value, MissingExtra)
    assert info.value.name == "_cnnscope_absent_dependency"


def test_unknown_extra_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid: " + ", ".join(EXTRAS)):
        require("json", "plots")


def test_embedder_without_tsne_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnscope.analysis.embedding import Embedder

    _hide(monkeypatch, "openTSNE")
    with pytest.raises(MissingExtra, match=r"cnnscope\[tsne\]"):
        Embedder("tsne")
    Embedder("pca")  # PCA needs scikit-learn only
    _hide(monkeypatch, "umap")
    with pytest.raises(MissingExtra, match=r"cnnscope\[umap\]"):
        Embedder("umap")


def test_training_log_without_tensorboard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TensorBoard: metrics.jsonl is written, no tb/ folder, no error."""
    from cnnscope.models import build_model
    from cnnscope.train.runs import METRICS, TENSORBOARD, MetricsLog

    _hide(monkeypatch, "tensorboard")
    log = MetricsLog(tmp_path, 0, build_model("lenet5"), graph=True)
    log.write({"step": 1, "accuracy": 0.5, "cross_entropy": 1.0}, prefix="train/")
    log.close()
    assert json.loads((tmp_path / METRICS).read_text())["accuracy"] == 0.5
    assert not (tmp_path / TENSORBOARD).exists()
