"""``cnnscope unused``: channels and units that (almost) never fire on the test set."""

from __future__ import annotations

import argparse
import json

from ._common import add_data_flag, add_model_flags, model_ref

HELP = "channels and units that (almost) never fire on the test set"


def add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", help="comma-separated stages; default: every ReLU, pool and fc")
    p.add_argument(
        "--threshold",
        type=float,
        default=1e-3,
        help="unused if its largest mean activation < threshold × the layer's largest",
    )
    add_model_flags(p)
    add_data_flag(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from .. import load_model
    from ..analysis.features import unused_channels
    from ..data import load_mnist

    model, _ = load_model(model_ref(args))
    data = load_mnist(args.data_dir)
    if args.layers:
        layers = [s.strip() for s in args.layers.split(",")]
    else:
        layers = [s for s in model.stage_names if not s.startswith("conv") and s != "logits"]
    results = [unused_channels(model, data.test_images, s, args.threshold) for s in layers]
    if args.json:
        print(
            json.dumps(
                [{k: v for k, v in r.items() if k != "max_per_unit"} for r in results], indent=1
            )
        )
        return 0
    for r in results:
        listed = ", ".join(map(str, r["unused"][:20])) + (" …" if len(r["unused"]) > 20 else "")
        print(
            f"{r['stage']:<7} {len(r['unused']):4d} of {r['units']:4d} unused"
            + (f": {listed}" if r["unused"] else "")
        )
    return 0
