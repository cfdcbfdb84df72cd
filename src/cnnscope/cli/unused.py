"""``cnnscope unused``: channels and units that (almost) never fire on the test set.

Units are measured where they fire: a pre-activation conv stage (``conv1``) is signed, so
its mean says nothing about firing; it is measured after its activation (``relu1``), the
same maps the feature images and top examples use.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import add_data_flag, add_model_flags, float_in, open_model

HELP = "channels and units that (almost) never fire on the test set"


def add(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--layers",
        help="comma-separated stages; a conv stage is measured after its activation; "
        "default: every activation, pool and fc stage",
    )
    p.add_argument(
        "--threshold",
        type=float_in(0, 1),
        default=1e-3,
        help="unused if its largest mean activation < threshold × the layer's largest",
    )
    add_model_flags(p)
    add_data_flag(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def stages(model: Any, requested: str | None) -> list[tuple[str, str]]:
    """(requested, measured) stage pairs; unknown names raise, listing the valid ones."""
    from ..models import activation_stage, resolve_stage, stage_infos

    infos = stage_infos(model)
    if not requested:
        # conv and norm maps are signed (read after their activation, itself listed)
        return [(s, s) for s, info in infos.items() if info.kind not in ("conv", "norm", "logits")]
    names = [s.strip() for s in requested.split(",") if s.strip()]
    for name in names:
        resolve_stage(model, name)
    return [(name, activation_stage(model, name)) for name in names]


def run(args: argparse.Namespace) -> int:

    from ..analysis.features import unit_scores, unused_channels
    from ..data import load_for
    from ._progress import bar

    model, meta = open_model(args)
    pairs = stages(model, args.layers)
    data = load_for(meta, args.data_dir)
    images = data.test_images
    results = []
    with bar("test images through each stage", quiet=args.json) as progress:
        for j, (requested, measured) in enumerate(pairs):
            # One bar over every stage: images done in this stage plus the stages before.
            def report(done: int, total: int, j: int = j) -> None:
                progress(j * total + done, len(pairs) * total)

            scores = unit_scores(model, images, measured, progress=report)
            r = unused_channels(model, images, measured, args.threshold, scores=scores)
            results.append({"requested": requested, **r})
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
    moved = [f"{r['requested']} → {r['stage']}" for r in results if r["requested"] != r["stage"]]
    if moved:
        print(f"measured after the activation, where units fire: {', '.join(moved)}")
    return 0
