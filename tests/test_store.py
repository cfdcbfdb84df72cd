"""store: every path in one place; cache keys change with what the cached answer depends on."""

from __future__ import annotations

from pathlib import Path

from cnnscope.analysis.features import RenderConfig
from cnnscope.store import best_effort, features_cache, units_cache


def test_feature_cache_is_keyed_by_the_render_settings(tmp_path, monkeypatch) -> None:
    # Images rendered before a change of defaults must not be served for the new ones.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a = features_cache("f" * 64, "conv1", "regularized", RenderConfig().digest())
    b = features_cache("f" * 64, "conv1", "regularized", RenderConfig(steps=81).digest())
    assert a != b and a.parent == tmp_path / "cnnscope" / "features"
    assert RenderConfig().digest() == RenderConfig().digest()


def test_units_cache_is_keyed_by_the_test_set(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert units_cache("f" * 64, "relu1", "a" * 64) != units_cache("f" * 64, "relu1", "b" * 64)


def test_a_cache_that_cannot_be_written_costs_nothing(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")

    def write() -> None:
        (blocked / "child").write_text("x")  # a file where a folder should be

    assert best_effort(write) is False
    assert best_effort(lambda: None) is True
