"""``cnnscope features``: activation maximization, the image each unit likes most."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import Any

from ._common import (
    UserError,
    add_device_flag,
    add_model_flags,
    device,
    float_in,
    open_model,
    out_dir,
)

HELP = "activation maximization: the image each unit of a layer likes most"


def add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layer", required=True, help="stage: conv1, conv2, fc1, logits, prob, …")
    p.add_argument("--method", default="regularized", choices=["regularized", "plain"])
    p.add_argument("--units", help="e.g. 0-15 or 3,5,9; default: all")
    p.add_argument("--steps", type=int, help="optimisation steps (regularized 80, plain 100)")
    p.add_argument("--variants", type=int, default=1, help="images per unit (diverse)")
    p.add_argument("--fourier", action="store_true", help="decorrelated Fourier parameterization")
    for flag, what in (
        ("jitter", "random translation"),
        ("transforms", "scale and rotation"),
        ("blur", "blur between steps"),
        ("penalties", "L2 and TV penalties"),
    ):
        p.add_argument(f"--no-{flag}", action="store_true", help=f"switch off {what}")
    p.add_argument(
        "--diversity",
        type=float_in(0, math.inf),
        help="push a unit's variants apart (default 1.0 when --variants > 1)",
    )
    p.add_argument(
        "--compare",
        metavar="UNIT",
        help="instead: one unit (e.g. logits:3) with each regularizer on and off",
    )
    p.add_argument("--seed", type=int, default=0)
    add_model_flags(p)
    add_device_flag(p)
    p.add_argument("--out", required=True, help="folder for the PNG grid and JSON")


def parse_units(text: str | None) -> list[int] | None:
    """``"0-15"``, ``"3,5,9"`` or ``"0-3,8"`` → unit indices; ``None`` or ``""`` → all."""
    if not text:
        return None
    units: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if not lo.strip().isdigit() or (hi and not hi.strip().isdigit()):
            raise UserError(f"--units {text!r}: use ranges and lists such as 0-15 or 3,5,9")
        if hi and int(hi) < int(lo):
            raise UserError(f"--units {text!r}: range {part} runs backwards; write {hi}-{lo}")
        units.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    return units


def _config(args: argparse.Namespace) -> Any:
    """The RenderConfig the flags ask for."""
    from ..analysis.features import RenderConfig, with_overrides

    base = RenderConfig.plain() if args.method == "plain" else RenderConfig()
    if args.diversity is None and args.variants > 1:
        args.diversity = 1.0
    return with_overrides(
        base,
        steps=args.steps,
        variants=args.variants,
        seed=args.seed,
        fourier=args.fourier or None,
        jitter=0 if args.no_jitter else None,
        scale=0.0 if args.no_transforms else None,
        rotate=0.0 if args.no_transforms else None,
        blur_every=0 if args.no_blur else None,
        l2=0.0 if args.no_penalties else None,
        tv=0.0 if args.no_penalties else None,
        diversity=args.diversity,
    )


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from ..analysis.features import check_units, layer_images
    from ..plots import tile_sheet
    from ._progress import bar

    cfg = _config(args)
    cfg.validate()  # out-of-range flags fail before the model loads
    units = parse_units(args.units)
    model, _ = open_model(args)
    model = model.to(device(args))  # --device: inputs follow the model's parameters
    if args.compare:
        return _compare(args, model)
    check_units(model, args.layer, units or [])  # an unknown stage lists the valid ones
    t0 = time.perf_counter()
    with bar(f"{args.layer} units") as progress:
        images = layer_images(model, args.layer, units, cfg, progress=progress)
    seconds = time.perf_counter() - t0
    units = units if units is not None else list(range(len(images) // cfg.variants))
    titles = [f"{args.layer}:{u}" for u in units for _ in range(cfg.variants)]
    out = out_dir(args.out)
    stem = f"features-{args.layer}-{args.method}"
    heading = f"{args.layer}, {args.method}: {len(units)} units"
    tile_sheet(images, cols=16, scale=3, labels=titles, title=heading).save(out / f"{stem}.png")
    payload = {
        "layer": args.layer,
        "method": args.method,
        "units": units,
        "config": dataclasses.asdict(cfg),
        "seconds": round(seconds, 2),
        "images": (np.round(images * 255).astype(np.uint8)).tolist(),
    }
    (out / f"{stem}.json").write_text(json.dumps(payload) + "\n")
    print(f"{len(images)} images for {args.layer} ({args.method}) in {seconds:.1f} s; wrote {out}")
    return 0


def _compare(args: argparse.Namespace, model: Any) -> int:
    """``--compare UNIT``: one unit rendered with each regularizer on and off."""
    import numpy as np

    from ..analysis.features import compare_regularizers
    from ..plots import tile_sheet
    from ._progress import bar

    with bar(f"{args.compare} variants") as progress:
        progress(0, 1)
        images = compare_regularizers(model, args.compare)
        progress(1, 1)
    out = out_dir(args.out)
    stem = f"compare-{args.compare.replace(':', '-')}"
    tile_sheet(
        np.stack(list(images.values())),
        cols=len(images),
        scale=4,
        labels=list(images),
        title=f"{args.compare}: each regularizer on and off",
    ).save(out / f"{stem}.png")
    pixels = {k: np.round(v * 255).astype(np.uint8).tolist() for k, v in images.items()}
    (out / f"{stem}.json").write_text(json.dumps(pixels) + "\n")
    print(f"{args.compare}: {len(images)} variants; wrote {out / (stem + '.png')}")
    return 0
