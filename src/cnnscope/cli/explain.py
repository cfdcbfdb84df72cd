"""``cnnscope explain``: attribution maps of one image, as a figure and JSON."""

from __future__ import annotations

import argparse
import json

from ._common import (
    UserError,
    add_data_flag,
    add_image_flags,
    add_model_flags,
    input_image,
    open_model,
    out_dir,
)

HELP = "attribution maps: which pixels made the network decide"


def add(p: argparse.ArgumentParser) -> None:
    from ..analysis.attribution import METHODS

    add_image_flags(p)
    p.add_argument("--method", default="all", choices=[*METHODS, "all"], help="attribution method")
    p.add_argument(
        "--target",
        help="class to explain: its index (0–9 for MNIST) or its name; default: the predicted one",
    )
    p.add_argument(
        "--layer", default=None, help="stage for gradcam (default: the model's last conv stage)"
    )
    add_model_flags(p)
    add_data_flag(p)
    p.add_argument("--out", required=True, help="folder for attribution.png and attribution.json")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..analysis.attribution import METHODS, Explainer
    from ..data import class_names
    from ..models import num_classes
    from ..plots import attribution_figure

    model, meta = open_model(args)
    target = _target(args.target, class_names(meta, num_classes(model)))
    image, source = input_image(args, meta, tuple(model.input_shape[-2:]))
    methods = list(METHODS) if args.method == "all" else [args.method]
    results = [Explainer(model, m, layer=args.layer)(image, target) for m in methods]
    out = out_dir(args.out)
    attribution_figure(image, results).savefig(out / "attribution.png", dpi=120)
    payload = {
        "source": source,
        "input": image.round(4).tolist(),
        "probabilities": results[0].probabilities,
        "attributions": [
            {
                "method": r.method,
                "target": r.target,
                "details": r.details,
                "map": r.map.round(6).tolist(),
            }
            for r in results
        ],
    }
    (out / "attribution.json").write_text(json.dumps(payload) + "\n")
    probs = results[0].probabilities
    print(
        f"{source}: predicted {int(np.argmax(probs))} (p={max(probs):.3f}); "
        f"explained class {results[0].target} with {', '.join(methods)}; wrote {out}"
    )
    return 0


def _target(text: str | None, classes: tuple[str, ...]) -> int | None:
    """``--target`` as an output index: an index of the model's classes, or one's name."""
    if text is None:
        return None
    if text in classes:  # a name ("cat"), or MNIST's digit names, which are their indices
        return classes.index(text)
    try:
        index = int(text)
    except ValueError:
        index = -1
    if not 0 <= index < len(classes):
        raise UserError(
            f"--target {text}: outside 0–{len(classes) - 1} and not a class name of this "
            f"model ({', '.join(classes[:12])}{' …' if len(classes) > 12 else ''})"
        )
    return index
