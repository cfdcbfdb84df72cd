"""``cnnscope embed``: 2-D embeddings of training snapshots as frames, a GIF and JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import (
    ModelChoice,
    UserError,
    add_data_flag,
    add_model_flags,
    float_in,
    model_choice,
    out_dir,
)

HELP = "2-D embeddings of training snapshots: PNG per snapshot, GIF, JSON"


def add(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run",
        help="a run folder made by cnnscope train (its snapshots and model.safetensors); "
        "for your own model give --model file.py:Class too",
    )
    add_model_flags(p)
    p.add_argument(
        "--layer",
        default="fc1",
        choices=["fc1", "logits"],
        help="representation: fc1 (the layer before the logits; for your own model the "
        "last vector stage before them) or the logits",
    )
    p.add_argument("--method", default="tsne", choices=["tsne", "pca", "umap"], help="embedding")
    p.add_argument(
        "--independent",
        action="store_true",
        help="embed each snapshot on its own instead of from the previous one",
    )
    p.add_argument(
        "--perplexity",
        type=float_in(0, 1000, low_open=True),
        default=30.0,
        help="t-SNE perplexity; 5–50 is typical",
    )
    p.add_argument("--out", required=True, help="folder for frames, embedding.gif, embedding.json")
    p.add_argument("--tensorboard", help="also write TensorBoard projector files here")
    add_data_flag(p, "MNIST folder (digit sprites for the projector)")


def run(args: argparse.Namespace) -> int:
    from ..analysis.embedding import embed_snapshots
    from ..analysis.snapshots import load_snapshots
    from ..checkpoints import open_model
    from ._progress import bar

    source, choice = _sources(args)
    if args.tensorboard:  # before minutes of t-SNE, not after
        from .._extras import require

        require("tensorboard", "tensorboard", "embed --tensorboard")
    snaps = load_snapshots(source)  # a malformed folder: a ValueError naming it
    model, _ = open_model(choice.model, choice.weights, normalize=choice.normalize,
                          input_size=choice.input_size)  # fmt: skip
    with bar(f"{args.method} of each snapshot") as progress:
        progress(0, len(snaps.steps))
        series, payload = embed_snapshots(
            snaps,
            model,
            stage=args.layer,
            method=args.method,
            aligned=not args.independent,
            perplexity=args.perplexity,
            callback=progress,
        )
    out = out_dir(args.out)
    _write_frames(out, payload, series.labels)
    (out / "embedding.json").write_text(json.dumps(payload) + "\n")
    if args.tensorboard:
        _projector(args, snaps, Path(args.tensorboard))
    for f in payload["frames"]:
        print(
            f"step {f['step']:6d}: kNN {f['knn_original']:.3f} ({args.layer}) / "
            f"{f['knn_2d']:.3f} (2-D), trustworthiness {f['trustworthiness']:.3f}"
        )
    mode = "independent" if args.independent else "aligned"
    print(
        f"{len(snaps.steps)} snapshots embedded ({args.method}, {mode}) in "
        f"{series.seconds:.1f} s; mean displacement between frames {series.displacement:.3f}; "
        f"wrote {out}"
    )
    return 0


def _sources(args: argparse.Namespace) -> tuple[Path, ModelChoice]:
    """The snapshots folder and the model to load: a run's, or a shipped model's."""
    from ..analysis.snapshots import shipped_snapshots
    from ..models import get_spec, is_foreign_spec
    from ..train import runs

    choice = model_choice(args)
    foreign = choice.model is not None and is_foreign_spec(choice.model)
    if not args.run:
        if foreign or choice.weights:
            raise UserError(
                "snapshots come from a training run: give --run RUN_DIR (with --model "
                "file.py:Class for your own model); only the built-ins ship snapshots"
            )
        name = choice.model or "deep_mnist"
        get_spec(name)  # an unknown name lists the valid ones
        return shipped_snapshots(name), choice
    source = Path(args.run) / runs.SNAPSHOTS
    if not (source / "index.json").exists():
        raise UserError(
            f"{args.run} has no snapshots/ (it holds: "
            f"{', '.join(sorted(p.name for p in Path(args.run).glob('*'))) or 'nothing'}). "
            "Snapshots are written by cnnscope train unless --snapshot-size 0."
        )
    weights = choice.weights or str(Path(args.run) / runs.WEIGHTS)
    if foreign:
        return source, ModelChoice(choice.model, weights, choice.normalize, choice.input_size)
    return source, ModelChoice(None, weights)


def _write_frames(out: Path, payload: dict[str, Any], labels: Any) -> None:
    """One PNG per snapshot, the animated GIF of them all, and the class-vector figure."""
    import io

    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    from ..plots import class_points_figure, embedding_figure

    frames_png = []
    for i, frame in enumerate(payload["frames"]):
        coords = np.asarray(frame["coords"])
        title = (
            f"step {frame['step']} (epoch {frame['epoch']:.2f}): subset accuracy "
            f"{frame['subset_accuracy']:.1%}, 2-D kNN {frame['knn_2d']:.1%}"
        )
        fig = embedding_figure(coords, labels, title, limits=18)
        fig.savefig(out / f"frame-{i:02d}-step-{frame['step']:06d}.png", dpi=90)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=70)
        frames_png.append(Image.open(buf).convert("P", palette=Image.Palette.ADAPTIVE))
        plt.close(fig)
    frames_png[0].save(
        out / "embedding.gif", save_all=True, append_images=frames_png[1:], duration=900, loop=0
    )
    class_points_figure(payload["classes"]).savefig(out / "class-vectors.png", dpi=100)


def _projector(args: argparse.Namespace, snaps: Any, folder: Path) -> None:
    """TensorBoard projector files: each snapshot's vectors, labels, a sprite of the digits."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from ..data import load_test_set

    data = load_test_set(args.data_dir)
    idx = torch.as_tensor(snaps.indices)
    sprites = data.test_images[idx].unsqueeze(1).float() / 255.0  # (N, 1, 28, 28)
    labels = [str(int(v)) for v in snaps.labels]
    with SummaryWriter(str(folder)) as writer:
        for step, vectors in zip(snaps.steps, snaps.stages[args.layer], strict=True):
            writer.add_embedding(
                torch.as_tensor(vectors),
                metadata=labels,
                label_img=sprites,
                global_step=step,
                tag=args.layer,
            )
