"""Package trained runs as the weights shipped in src/cnnscope/weights/.

    python scripts/ship_weights.py runs/deep_mnist runs/hvass ...
    python scripts/ship_weights.py --features-of deep_mnist   # re-render shipped images only
    python scripts/ship_weights.py --features-of deep_mnist --only logits/prior conv1/prior
    python scripts/ship_weights.py runs/best --layouts best --frames 6  # + 6 layouts

For each run: the weights in float16 (refused if that changes test accuracy by more than
0.05 points), their metadata, the training curves (metrics.jsonl) and, where asked, the
representation snapshots compacted to the leading principal components of fc1; or, where
asked with --layouts, only the t-SNE layouts of up to --frames snapshots (the Embedding tab
of a model whose snapshots would not fit the package).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from cnnscope._io import atomic_write
from cnnscope.analysis.embedding import embed_snapshots
from cnnscope.analysis.evaluation import evaluate
from cnnscope.analysis.snapshots import Snapshots, compact, load_snapshots
from cnnscope.checkpoints import load_weights, save_weights
from cnnscope.data import load_mnist
from cnnscope.store import SHIPPED_DIR, feature_key, shipped


def ship_features(model, name: str, only: list[str] | None = None) -> None:  # type: ignore[no-untyped-def]
    """Every unit's preferred image, every method (fc1: regularized only), as uint8.

    ``only``: re-render just these ``stage/method`` keys and keep the file's others.
    """
    from safetensors.numpy import load_file, save_file

    from cnnscope.analysis.features import METHODS, config_for, layer_images

    images = load_file(str(shipped(name, "features.safetensors"))) if only else {}
    from cnnscope.models import stage_infos

    kinds = {name: info.kind for name, info in stage_infos(model).items()}
    for stage in [s for s, kind in kinds.items() if kind in ("conv", "fc", "logits")]:
        for method in METHODS:
            if stage == "fc1" and method != "regularized":
                continue  # 0.8 MB each (plain: images nobody can read); rendered on demand
            if only and feature_key(stage, method) not in only:
                continue
            x = layer_images(model, stage, config=config_for(method))
            images[feature_key(stage, method)] = np.round(x * 255).astype(np.uint8)
    atomic_write(shipped(name, "features.safetensors"), lambda tmp: save_file(images, str(tmp)))


def thin(snaps: Snapshots, frames: int) -> Snapshots:
    """At most ``frames`` snapshots, evenly spread, the first and the last kept."""
    n = len(snaps.steps)
    if n <= frames:
        return snaps
    keep = sorted({round(i * (n - 1) / (frames - 1)) for i in range(frames)})
    return dataclasses.replace(
        snaps,
        steps=[snaps.steps[i] for i in keep],
        epochs=[snaps.epochs[i] for i in keep],
        subset_accuracy=[snaps.subset_accuracy[i] for i in keep],
        stages={k: [v[i] for i in keep] for k, v in snaps.stages.items()},
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("runs", nargs="*", type=Path, help="run folders made by cnnscope train")
    p.add_argument(
        "--features-of",
        nargs="*",
        default=[],
        help="shipped models whose feature images to re-render (after a renderer change)",
    )
    p.add_argument(
        "--only",
        nargs="*",
        help="with --features-of: re-render only these stage/method keys (logits/prior …)",
    )
    p.add_argument(
        "--snapshots", nargs="*", default=["deep_mnist"], help="architectures whose snapshots ship"
    )
    p.add_argument(
        "--layouts",
        nargs="*",
        default=[],
        help="architectures whose embedding layouts ship without their snapshots",
    )
    p.add_argument("--frames", type=int, default=10, help="snapshots laid out for --layouts")
    p.add_argument("--components", type=int, default=50, help="fc1 principal components kept")
    args = p.parse_args()
    for name in args.features_of:
        model, _ = load_weights(shipped(name, "safetensors"), expect=name)
        ship_features(model, name, args.only)
    data = load_mnist()
    for run in args.runs:
        model, meta = load_weights(run / "model.safetensors")
        if not meta.get("complete"):
            raise SystemExit(f"{run}: training did not finish; resume it first")
        full = evaluate(model, data.test_images, data.test_labels)
        model.half().float()  # round-trip through float16, as the shipped file stores it
        half = evaluate(model, data.test_images, data.test_labels)
        if abs(half.accuracy - full.accuracy) > 5e-4:
            raise SystemExit(f"{run}: float16 changes accuracy {full.accuracy} → {half.accuracy}")
        name = meta["model"]
        metrics = {
            **meta["metrics"],
            "test_accuracy": half.accuracy,
            "test_accuracy_float32": full.accuracy,
            "test_per_class_accuracy": half.per_class_accuracy,
        }
        extra = {k: v for k, v in meta.items() if k in ("train_config", "data", "threads")}
        if isinstance(extra.get("data"), dict):  # the folder it was read from is this machine's
            extra["data"] = {k: v for k, v in extra["data"].items() if k != "source"}
        save_weights(
            model,
            shipped(name, "safetensors"),
            {**extra, "metrics": metrics, "complete": True, "created_from": str(run)},
            dtype=torch.float16,
        )
        shutil.copyfile(run / "metrics.jsonl", shipped(name, "metrics.jsonl"))
        if name in args.snapshots:
            packed = shipped(name, "snapshots.safetensors")
            compact(run / "snapshots", packed, args.components)
            # The Embedding view opens at once on a fresh install: ship its layouts too.
            _, payload = embed_snapshots(load_snapshots(packed), model)
            (shipped(name, "embedding.json")).write_text(json.dumps(payload) + "\n")
            ship_features(model, name)
        elif name in args.layouts:
            _, payload = embed_snapshots(
                thin(load_snapshots(run / "snapshots"), args.frames), model
            )
            (shipped(name, "embedding.json")).write_text(json.dumps(payload) + "\n")
        sizes = {f.name: f.stat().st_size for f in SHIPPED_DIR.glob(f"{name}.*")}
        print(
            json.dumps(
                {
                    "model": name,
                    "test_accuracy": half.accuracy,
                    "test_accuracy_float32": full.accuracy,
                    "bytes": sizes,
                }
            )
        )
    total = sum(f.stat().st_size for f in SHIPPED_DIR.iterdir())
    print(f"weights/ now holds {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
