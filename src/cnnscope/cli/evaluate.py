"""``cnnscope evaluate``: test accuracy, per-class figures, confusion and mistakes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import (
    add_data_flag,
    add_device_flag,
    add_model_flags,
    device,
    model_choice,
    open_model,
    out_dir,
)

HELP = "test accuracy, per-class figures and the confusion matrix on the test set"


def add(p: argparse.ArgumentParser) -> None:
    add_model_flags(p)
    add_device_flag(p)
    add_data_flag(
        p,
        "the data set (IDX folder or .npz) to evaluate on; default: the one the weights "
        "were trained on, else MNIST (its test set ships with cnnscope)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--out", help="write confusion.png, mistakes.png and evaluation.json here")
    p.add_argument("--no-cache", action="store_true", help="recompute the predictions")


def run(args: argparse.Namespace) -> int:
    from ..analysis.evaluation import report, untrained_accuracy
    from ..data import class_names, load_for
    from ..models import num_classes
    from ._progress import bar

    model, meta = open_model(args)
    model = model.to(device(args))  # --device: inputs follow the model's parameters
    data = load_for(meta, args.data_dir)
    classes = class_names(meta, num_classes(model), data)
    with bar("test images", quiet=args.json) as progress:
        rep = report(
            model,
            data.test_images,
            data.test_labels,
            cache=not args.no_cache,
            progress=progress,
            classes=classes,
        )
    seed = int(meta.get("train_config", {}).get("seed", 0))
    with bar("untrained baseline", quiet=args.json) as progress:
        progress(0, 1)
        baseline = untrained_accuracy(model, data.test_images, data.test_labels, seed)
        progress(1, 1)
    rep.extra = {
        "model": model.arch,  # a built-in's name, or your model's file.py:Class
        "weights": model_choice(args).weights or "shipped",
        "untrained_accuracy": baseline,
        "data": str(data.source),
    }
    summary = rep.as_dict()
    if args.out:
        _write_figures(args.out, rep, data)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{summary['model']} ({summary['weights']}): test accuracy {rep.accuracy:.2%} on "
        f"{len(rep.labels):,} images ({summary['errors']} errors), cross-entropy "
        f"{rep.cross_entropy:.4f}; untrained {summary['untrained_accuracy']:.2%}"
    )
    width = max(5, *(len(c) for c in rep.classes))
    print(f"{'class':<{width}}  precision   recall       F1  support")
    m = rep.metrics
    for k, name in enumerate(rep.classes):
        print(
            f"{name:<{width}}   {m['precision'][k]:8.2%} {m['recall'][k]:8.2%} "
            f"{m['f1'][k]:8.2%} {m['support'][k]:8d}"
        )
    took = "from cache" if rep.cached else f"in {rep.seconds:.2f} s"
    print(f"predictions {took}" + (f"; wrote {args.out}" if args.out else ""))
    return 0


def _write_figures(folder: str, rep: Any, data: Any) -> None:
    """confusion.png, mistakes.png (the 64 most confident) and evaluation.json."""
    from ..plots import confusion_figure, mistakes_figure

    out = out_dir(folder)
    confusion_figure(rep).savefig(out / "confusion.png", dpi=120)
    mistakes = rep.mistakes()
    mistakes_figure(
        mistakes[:64],
        data.test_images.numpy(),
        title=f"{len(mistakes)} misclassified test images; the 64 most confident",
        classes=rep.classes,
    ).savefig(out / "mistakes.png", dpi=120)
    full = rep.as_dict(mistakes=len(mistakes))
    (out / "evaluation.json").write_text(json.dumps(full, indent=1) + "\n")
