"""``cnnscope features``: activation maximization, the image each unit likes most."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import Any

from ._common import (
    UserError,
    add_data_flag,
    add_device_flag,
    add_model_flags,
    device,
    float_in,
    open_model,
    out_dir,
)

HELP = "activation maximization: the image each unit of a layer likes most"


def add(p: argparse.ArgumentParser) -> None:
    from ..analysis.features.methods import METHODS

    p.add_argument("--layer", help="stage: conv1, conv2, fc1, logits, prob, … (required)")
    p.add_argument(
        "--method",
        default="regularized",
        choices=list(METHODS),
        help="; ".join(f"{m.id}: {m.trade}" for m in METHODS.values()),
    )
    p.add_argument("--units", help="e.g. 0-15 or 3,5,9; default: all")
    p.add_argument("--steps", type=int, help="optimisation steps (default: the method's)")
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
    p.add_argument(
        "--check",
        action="store_true",
        help="instead: judge the 10 class images of every method (independent classifiers "
        "on MNIST pixels, faithfulness percentile, background); --out optional",
    )
    p.add_argument("--seed", type=int, default=0)
    add_model_flags(p)
    add_device_flag(p)
    add_data_flag(p, "folder with the four IDX .gz files (--check: the judges' training set)")
    p.add_argument("--out", help="folder for the PNG grid and JSON (required but with --check)")


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
    from ..analysis.features import config_for, with_overrides

    base = config_for(args.method)
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

    if args.check:
        return _check(args)
    if not args.layer or not args.out:
        raise UserError("features needs --layer and --out (or --check to judge class images)")
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


def _check(args: argparse.Namespace) -> int:
    """``--check``: each method's 10 class images judged from outside the model."""
    import numpy as np

    from ..analysis.features import METHODS
    from ..analysis.features.check import Judges, check_class_images
    from ..data import load_for
    from ..plots import tile_sheet
    from ._progress import bar

    model, meta = open_model(args)
    data = load_for(meta or {}, args.data_dir)  # the weights' own data set
    if model.input_shape[-2:] != (28, 28) or data.num_classes != 10:
        raise UserError(
            "--check judges 10 class images of 28×28 digits; this model or its data differ"
        )
    with bar("judging class images") as progress:
        progress(0, len(METHODS) + 1)
        judges = Judges(data)
        results = []
        for i, method in enumerate(METHODS):
            progress(i + 1, len(METHODS) + 1)
            results += check_class_images(model, data, judges, [method])
        progress(len(METHODS) + 1, len(METHODS) + 1)
    print(f"{'method':12s} logistic  5-NN  faithful  lowest pct  mean   border")
    for r in results:
        print(
            f"{r.method:12s} {r.recognised['logistic']:>5}/10 {r.recognised['knn']:>3}/10 "
            f"{r.faithful:>6}/10  {min(r.percentile):9.1%}  {r.mean:.3f}  {r.frame:.3f}"
        )
    print(
        "judges: logistic regression and 5-NN trained on MNIST pixels, never this model; "
        "faithful: the class image's logit beats 99 % of its class's test digits; "
        "MNIST's digits: mean 0.13, border 0.005"
        + ("" if judges.split == "train" else " (judges trained on the test set: no training set)")
    )
    if args.out:
        out = out_dir(args.out)
        payload = [r.as_dict() for r in results]
        (out / "check.json").write_text(json.dumps(payload, indent=1) + "\n")
        labels = [f"{r.method}" if k == 0 else str(k) for r in results for k in range(10)]
        images = np.concatenate([r.images for r in results])
        tile_sheet(images, cols=10, scale=3, labels=labels, title="class images").save(
            out / "check.png"
        )
        print(f"wrote {out / 'check.json'} and check.png")
    return 0
