from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnscope.analysis.embedding import (
    Embedder,
    class_embedding,
    knn_accuracy,
    mean_displacement,
    trustworthiness,
)
from cnnscope.analysis.snapshots import Snapshots
from cnnscope.cli import main


def _series(frames: int = 4, n: int = 300, dim: int = 20, seed: int = 0) -> Snapshots:
    """Five Gaussian clusters that tighten frame by frame, as training tightens classes."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(5), n // 5)
    centres = rng.normal(0, 4, (5, dim))
    noise = rng.normal(0, 1, (n, dim))
    fc1 = [(centres[labels] + noise * (2.0 - 0.4 * t)).astype(np.float32) for t in range(frames)]
    logits = [np.eye(10, dtype=np.float32)[labels] for _ in range(frames)]
    return Snapshots(
        indices=np.arange(n),
        labels=labels,
        steps=[0, 10, 20, 30][:frames],
        epochs=[0.0, 0.1, 0.2, 0.3][:frames],
        subset_accuracy=[0.1, 0.5, 0.8, 0.9][:frames],
        stages={"fc1": fc1, "logits": logits},
        projection="none",
    )


def test_knn_accuracy_hand_example() -> None:
    x = np.array([[0, 0], [0, 1], [1, 0], [10, 10], [10, 11], [11, 10]], dtype=float)
    assert knn_accuracy(x, np.array([0, 0, 0, 1, 1, 1]), k=2) == 1.0
    assert knn_accuracy(x, np.array([0, 1, 0, 1, 0, 1]), k=2) < 0.5


def test_neighbour_figures_equal_scikit_learns() -> None:
    """The dense kNN accuracy and trustworthiness (0.8 s → 0.05 s a frame at 2,000 points)
    give scikit-learn's numbers: its trustworthiness, a kNN vote over its neighbours."""
    from sklearn.manifold import trustworthiness as sk_trustworthiness
    from sklearn.neighbors import NearestNeighbors

    snaps = _series(frames=1, n=400, dim=20, seed=3)
    x, labels = snaps.stages["fc1"][0], snaps.labels
    rng = np.random.default_rng(1)
    for y in (x[:, :2] + rng.normal(0, 2, (400, 2)), x @ rng.normal(size=(20, 2))):
        # scikit-learn ranks float32 distances, this float64 ones: near-ties may differ
        assert trustworthiness(x, y, 10) == pytest.approx(
            sk_trustworthiness(x, y, n_neighbors=10), abs=1e-5
        )
        for k in (1, 5, 10):
            idx = NearestNeighbors(n_neighbors=k + 1).fit(y).kneighbors(y)[1][:, 1:]
            votes = np.array([np.bincount(v, minlength=5).argmax() for v in labels[idx]])
            assert knn_accuracy(y, labels, k) == pytest.approx((votes == labels).mean())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_clusters_come_out_separated(method: str) -> None:
    series = Embedder(method, knn=10).fit(_series())
    assert len(series.coords) == 4
    assert all(np.isfinite(c).all() and c.shape == (300, 2) for c in series.coords)
    assert series.knn_2d[-1] >= 0.95
    assert series.knn_original[-1] >= 0.95
    assert all(0.5 < t <= 1 for t in series.trustworthiness)
    assert [p.tolist() for p in series.predictions] == [series.labels.tolist()] * 4


def _drifting(frames: int = 5, n: int = 300, dim: int = 20) -> Snapshots:
    """Clusters whose centres move from one arrangement to another, as features do in training."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), n // 5)
    a, b = rng.normal(0, 4, (5, dim)), rng.normal(0, 4, (5, dim))
    noise = rng.normal(0, 1, (n, dim))
    fc1 = [
        ((1 - t) * a[labels] + t * b[labels] + noise).astype(np.float32)
        for t in np.linspace(0, 1, frames)
    ]
    base = _series(frames=4, n=n, dim=dim)
    return Snapshots(
        indices=base.indices,
        labels=labels,
        steps=list(range(frames)),
        epochs=[0.0] * frames,
        subset_accuracy=[0.5] * frames,
        stages={"fc1": fc1, "logits": [base.stages["logits"][0]] * frames},
        projection="none",
    )


@pytest.mark.slow
def test_alignment_lowers_frame_to_frame_displacement() -> None:
    # Measured here: 0.13 aligned vs 0.84 independent. (With static clusters both are
    # stable: PCA initialisations agree when the geometry does not change.)
    snaps = _drifting()
    aligned = Embedder("tsne", aligned=True).fit(snaps)
    independent = Embedder("tsne", aligned=False).fit(snaps)
    assert aligned.displacement < 0.5 * independent.displacement


def test_mean_displacement_is_scale_free() -> None:
    a = np.random.default_rng(0).normal(size=(50, 2))
    assert mean_displacement([a, a * 7]) == pytest.approx(0, abs=1e-9)
    assert mean_displacement([a, -a]) > 1


def test_errors_say_what_is_valid() -> None:
    with pytest.raises(ValueError, match="valid: tsne, pca, umap"):
        Embedder("mds")
    with pytest.raises(ValueError, match="they hold: fc1, logits"):
        Embedder("pca", "conv2").fit(_series())


def test_class_embedding_gives_ten_points() -> None:
    rng = np.random.default_rng(0)
    out = class_embedding(rng.normal(size=(10, 64)), rng.normal(size=(10, 64)))
    assert np.asarray(out["weights"]).shape == (10, 2) == np.asarray(out["means"]).shape


@pytest.mark.slow
def test_embed_cli_frames_gif_json_and_projector(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    argv = ["train", "--dry-run", "--model", "hvass", "--run-dir", str(run), "--json"]
    assert main([*argv, "--snapshot-size", "200"]) == 0
    capsys.readouterr()
    out, tb = tmp_path / "emb", tmp_path / "tb"
    assert main(["embed", "--run", str(run), "--method", "pca", "--out", str(out),
                 "--tensorboard", str(tb)]) == 0  # fmt: skip
    payload = json.loads((out / "embedding.json").read_text())
    steps = [f["step"] for f in payload["frames"]]
    assert steps == [0, 7, 14, 20]  # dry run: step 0, epoch ends (7 steps each), the end
    assert len(list(out.glob("frame-*.png"))) == 4
    with Image.open(out / "embedding.gif") as gif:
        assert gif.n_frames == 4
    assert np.asarray(payload["classes"]["weights"]).shape == (10, 2)
    # TensorBoard projector: a config naming each snapshot's files, which parse.
    config = (tb / "projector_config.pbtxt").read_text()
    assert config.count("embeddings {") == 4 and "sprite" in config
    for step in ("00000", "00007", "00014", "00020"):
        rows = (tb / step / "fc1" / "tensors.tsv").read_text().splitlines()
        assert len(rows) == 200 and len(rows[0].split("\t")) == 128
        meta = (tb / step / "fc1" / "metadata.tsv").read_text().splitlines()
        assert len(meta) == 200 and set(meta) <= {str(k) for k in range(10)}
        with Image.open(tb / step / "fc1" / "sprite.png") as sprite:
            width, height = sprite.size
        assert width % 28 == 0 and width * height >= 200 * 28 * 28


def test_embed_cli_run_without_snapshots(tmp_path: Path, capsys) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.safetensors").write_bytes(b"")
    assert main(["embed", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "has no snapshots/" in err and "model.safetensors" in err


def test_embed_cli_model_without_shipped_snapshots(tmp_path: Path, capsys) -> None:
    assert main(["embed", "--model", "lenet5", "--out", str(tmp_path / "o")]) == 2
    assert "no snapshots ship with 'lenet5'" in capsys.readouterr().err


def test_malformed_snapshots_are_value_errors_naming_the_path(tmp_path: Path) -> None:
    from cnnscope.analysis.snapshots import load_snapshots

    folder = tmp_path / "snapshots"
    folder.mkdir()
    (folder / "index.json").write_text('{"snapshots": [{"file": "nope"}]}')
    with pytest.raises(ValueError, match="snapshots"):
        load_snapshots(folder)
    (tmp_path / "x.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"x\.safetensors"):
        load_snapshots(tmp_path / "x.safetensors")


def _first(snaps: Snapshots, k: int) -> Snapshots:
    """The first ``k`` snapshots of ``snaps``: a run that has not written the rest yet."""
    return Snapshots(
        indices=snaps.indices,
        labels=snaps.labels,
        steps=snaps.steps[:k],
        epochs=snaps.epochs[:k],
        subset_accuracy=snaps.subset_accuracy[:k],
        stages={s: v[:k] for s, v in snaps.stages.items()},
        projection=snaps.projection,
    )


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_extend_lays_out_new_snapshots_after_the_frames_made(method: str) -> None:
    snaps = _series()
    whole = Embedder(method, seed=0).fit(snaps)
    grown = Embedder(method, seed=0).extend(None, _first(snaps, 2))
    kept = [c.copy() for c in grown.coords]
    grown = Embedder(method, seed=0).extend(grown, snaps)
    assert grown.steps == snaps.steps and len(grown.coords) == 4
    assert all(np.array_equal(a, b) for a, b in zip(kept, grown.coords[:2], strict=True))
    # Frame by frame as the snapshots arrive is frame by frame at once: the same layouts.
    for a, b in zip(whole.coords, grown.coords, strict=True):
        assert np.allclose(a, b, atol=1e-4)
    assert grown.knn_2d == pytest.approx(whole.knn_2d)
    assert Embedder(method, seed=0).extend(grown, snaps).steps == snaps.steps  # nothing new
