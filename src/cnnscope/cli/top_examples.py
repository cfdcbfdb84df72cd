"""``cnnscope top-examples``: the test images that excite one unit most."""

from __future__ import annotations

import argparse
import json

from ._common import add_data_flag, add_model_flags, int_in, open_model, out_dir

HELP = "the test images that excite one unit most"


def add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layer", required=True, help="stage, e.g. conv2, relu2, fc1, logits")
    p.add_argument("--unit", type=int_in(0), required=True, help="channel or unit index")
    p.add_argument("-k", type=int_in(1, 1000), default=9, help="how many images, 1–1000")
    add_model_flags(p)
    add_data_flag(p)
    p.add_argument("--out", required=True, help="folder for the PNG and JSON")


def run(args: argparse.Namespace) -> int:

    from ..analysis.features import check_units, top_examples, unit_scores
    from ..data import load_for
    from ..models import activation_stage, resolve_stage
    from ..plots import tile_sheet
    from ._progress import bar

    model, meta = open_model(args)
    resolve_stage(model, args.layer)  # stages only ("prob" is an objective, not a stage)
    check_units(model, args.layer, [args.unit])  # before the pass over the test set
    data = load_for(meta, args.data_dir)
    with bar("test images") as progress:
        # Ranked where the unit fires, as top_examples does: a conv after its activation.
        scores = unit_scores(
            model, data.test_images, activation_stage(model, args.layer), progress=progress
        )
    top = top_examples(model, data.test_images, args.layer, args.unit, k=args.k, scores=scores)
    images = data.test_images[[t.index for t in top]].numpy()
    titles = [f"#{t.index} ({int(data.test_labels[t.index])}) {t.score:.2f}" for t in top]
    out = out_dir(args.out)
    stem = f"top-{args.layer}-{args.unit}"
    tile_sheet(
        images,
        cols=3,
        scale=4,
        labels=titles,
        boxes=[t.field for t in top],
        title=f"{args.layer}:{args.unit}: the test images it likes most",
    ).save(out / f"{stem}.png")
    (out / f"{stem}.json").write_text(json.dumps([t.__dict__ for t in top], indent=1) + "\n")
    print(
        f"{args.layer}:{args.unit}: test images {', '.join(str(t.index) for t in top)}; wrote {out}"
    )
    return 0
