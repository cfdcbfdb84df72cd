"""``cnnscope top-examples``: the test images that excite one unit most."""

from __future__ import annotations

import argparse
import json

from ._common import add_data_flag, add_model_flags, model_ref, out_dir

HELP = "the test images that excite one unit most"


def add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layer", required=True, help="stage, e.g. conv2, relu2, fc1, logits")
    p.add_argument("--unit", type=int, required=True, help="channel or unit index")
    p.add_argument("-k", type=int, default=9, help="how many images")
    add_model_flags(p)
    add_data_flag(p)
    p.add_argument("--out", required=True, help="folder for the PNG and JSON")


def run(args: argparse.Namespace) -> int:
    from .. import load_model
    from ..analysis.features import top_examples
    from ..data import load_mnist
    from ..plots import image_grid_figure

    model, _ = load_model(model_ref(args))
    data = load_mnist(args.data_dir)
    top = top_examples(model, data.test_images, args.layer, args.unit, k=args.k)
    images = data.test_images[[t.index for t in top]].numpy()
    titles = [f"#{t.index} ({int(data.test_labels[t.index])}) {t.score:.2f}" for t in top]
    out = out_dir(args.out)
    stem = f"top-{args.layer}-{args.unit}"
    image_grid_figure(
        images,
        titles,
        columns=3,
        boxes=[t.field for t in top],
        title=f"{args.layer}:{args.unit}: the test images it likes most",
    ).savefig(out / f"{stem}.png", dpi=110)
    (out / f"{stem}.json").write_text(json.dumps([t.__dict__ for t in top], indent=1) + "\n")
    print(
        f"{args.layer}:{args.unit}: test images {', '.join(str(t.index) for t in top)}; wrote {out}"
    )
    return 0
