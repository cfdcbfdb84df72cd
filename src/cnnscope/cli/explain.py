"""``cnnscope explain``: attribution maps of one image, as a figure and JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import UserError, add_data_flag, add_model_flags, int_in, model_ref, out_dir

HELP = "attribution maps: which pixels made the network decide"


def add(p: argparse.ArgumentParser) -> None:
    from ..analysis.attribution import METHODS

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="an image file (a drawing, a scan: preprocessed MNIST-style)")
    src.add_argument("--test-index", type=int_in(0), help="an MNIST test image, 0–9999")
    p.add_argument("--method", default="all", choices=[*METHODS, "all"], help="attribution method")
    p.add_argument(
        "--target", type=int_in(0, 9), help="class to explain, 0–9; default: the predicted one"
    )
    p.add_argument("--layer", default="conv2", help="stage for gradcam")
    add_model_flags(p)
    add_data_flag(p)
    p.add_argument("--out", required=True, help="folder for attribution.png and attribution.json")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import load_model
    from ..analysis.attribution import METHODS, Explainer
    from ..plots import attribution_figure

    model, _ = load_model(model_ref(args))
    image, source = _input(args)
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


def _input(args: argparse.Namespace) -> tuple[Any, str]:
    """The (28, 28) float image to explain and a description of where it came from."""
    import numpy as np

    if args.image:
        return _read_image(Path(args.image)), args.image
    from ..data import load_mnist

    data = load_mnist(args.data_dir)
    if not 0 <= args.test_index < len(data.test_images):
        raise UserError(f"--test-index {args.test_index} outside 0–{len(data.test_images) - 1}")
    image = data.test_images[args.test_index].numpy().astype(np.float32) / 255.0
    return image, f"test image {args.test_index} (label {int(data.test_labels[args.test_index])})"


def _read_image(path: Path) -> Any:
    """An image file → (28, 28) float in [0, 1], white ink on black, MNIST-style.

    :func:`cnnscope.preprocess.read_image` checks the pixel count from the header before
    decoding (a decompression bomb) and names the file in its errors.
    """
    from ..preprocess import read_image, to_mnist

    if not path.is_file():
        raise UserError(f"{path}: no such image file")
    gray = read_image(path)  # (H, W) grey levels in [0, 1], as stored
    if gray.mean() > 0.5:  # dark ink on light paper: flip to MNIST's white on black
        gray = 1.0 - gray
    return gray if gray.shape == (28, 28) else to_mnist(gray)
