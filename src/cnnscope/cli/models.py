"""``cnnscope models``: the architectures, their parameter counts and stage shapes."""

from __future__ import annotations

import argparse
import json

HELP = "list the architectures with parameter counts and stage shapes"


def add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
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
