"""``cnnscope explain``: attribution maps of one image, as a figure and JSON."""

from __future__ import annotations

import argparse
import json

from ._common import (
    add_data_flag,
    add_image_flags,
    add_model_flags,
    input_image,
    int_in,
    open_model,
    out_dir,
)

HELP = "attribution maps: which pixels made the network decide"


def add(p: argparse.ArgumentParser) -> None:
    from ..analysis.attribution import METHODS

    add_image_flags(p)
    p.add_argument("--method", default="all", choices=[*METHODS, "all"], help="attribution method")
    p.add_argument(
        "--target", type=int_in(0, 9), help="class to explain, 0–9; default: the predicted one"
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
    from ..plots import attribution_figure

    model, meta = open_model(args)
    image, source = input_image(args, meta, tuple(model.input_shape[-2:]))
    methods = list(METHODS) if args.method == "all" else [args.method]
    results = [Explainer(model, m, layer=args.layer)(image, args.target) for m in methods]
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
