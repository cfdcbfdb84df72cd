"""``cnnscope models``: the architectures, or the stages cnnscope finds in your own model."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import add_model_flags, model_choice, open_model

HELP = "list the architectures, or show the stages of one (--model file.py:Class)"


def add(p: argparse.ArgumentParser) -> None:
    add_model_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "model_items", None):
        return _one(args)
    from ..analysis.activations import describe
    from ..checkpoints import bundled_models, bundled_path, read_metadata
    from ..models import MODELS

    shipped = set(bundled_models())
    rows = []
    for name in MODELS:
        info = describe(name)
        if name in shipped:
            metrics = read_metadata(bundled_path(name)).get("metrics", {})
            info["shipped_test_accuracy"] = metrics.get("test_accuracy")
        rows.append(info)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for info in rows:
        acc = info.get("shipped_test_accuracy")
        shipped_note = f"shipped weights: {acc:.2%} test accuracy" if acc else "no shipped weights"
        print(f"{info['name']:<12} {info['parameters']:>10,} parameters   {shipped_note}")
        print(f"  {info['description']}")
        print("  " + "  ".join(f"{k} {'×'.join(map(str, v))}" for k, v in info["stages"].items()))
    return 0


def _one(args: argparse.Namespace) -> int:
    """One model's discovered stages: name, kind, module, shape, receptive field."""
    from ..models import count_parameters, num_classes, stage_infos

    choice = model_choice(args)
    model, _ = open_model(args, choice)
    infos = stage_infos(model)
    summary: dict[str, Any] = {
        "model": choice.label,
        "parameters": count_parameters(model),
        "input_shape": list(model.input_shape),
        "classes": num_classes(model),
        "normalize": list(choice.normalize) if choice.normalize else None,
        "stages": [i.as_dict() for i in infos.values()],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    shape = "×".join(map(str, model.input_shape))
    print(
        f"{choice.label}: {summary['parameters']:,} parameters, input {shape}, "
        f"{summary['classes']} classes, {len(infos)} stages"
    )
    width = max(len(n) for n in infos)
    for info in infos.values():
        rf = f"rf {info.rf_size}" if info.rf_size else ""
        dims = "×".join(map(str, info.shape))
        print(f"  {info.name:<{width}}  {info.kind:<6}  {info.module:<18} {dims:<12} {rf}")
    return 0
