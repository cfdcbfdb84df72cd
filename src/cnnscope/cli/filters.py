"""``cnnscope filters``: a conv layer's learned kernels as images."""

from __future__ import annotations

import argparse
import json

from ._common import add_model_flags, open_model, out_dir

HELP = "a conv layer's learned kernels as images"


def add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layer", default="conv1", help="a conv stage")
    add_model_flags(p)
    p.add_argument("--out", required=True, help="folder for filters-LAYER.png and .json")


def run(args: argparse.Namespace) -> int:

    from ..analysis.features import filters
    from ..plots import tile_sheet

    model, _ = open_model(args)
    w = filters(model, args.layer)  # (out, in, kH, kW)
    out = out_dir(args.out)
    if w.shape[1] == 1:
        images, titles, cols, scale = w[:, 0], [str(i) for i in range(len(w))], 16, 12
    else:  # one row per output channel, one column per input channel
        images, titles, cols, scale = w.reshape(-1, *w.shape[2:]), None, w.shape[1], 6
    tile_sheet(
        images,
        cols=cols,
        scale=scale,
        labels=titles,
        signed=True,
        title=f"{args.layer} kernels {tuple(w.shape)}: blue < 0 < red",
    ).save(out / f"filters-{args.layer}.png")
    (out / f"filters-{args.layer}.json").write_text(
        json.dumps({"layer": args.layer, "shape": list(w.shape), "weights": w.round(6).tolist()})
    )
    print(
        f"{args.layer}: {w.shape[0]} filters of {w.shape[1]}×{w.shape[2]}×{w.shape[3]}; wrote {out}"
    )
    return 0
