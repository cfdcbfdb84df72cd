"""``cnnscope peek``: one image through the network, every conv channel's maps side by side.

The seed's "piece of code to peek at intermediate results": for each conv stage, one row
per channel with its conv → activation → pool maps, each scaled to its own range (as
convnetjs draws them), and the probabilities. Which stages follow a conv comes from
:func:`cnnscope.models.stage_infos` (``kind`` and ``parent``), never from stage names.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ._common import (
    add_data_flag,
    add_image_flags,
    add_model_flags,
    input_image,
    int_in,
    open_model,
    out_dir,
)

HELP = "one image through the network: each channel's conv → ReLU → pool maps"


def add(p: argparse.ArgumentParser) -> None:
    add_image_flags(p)
    add_model_flags(p)
    add_data_flag(p)
    p.add_argument(
        "--scale", type=int_in(1, 16), default=4, help="screen pixels per map pixel, 1–16"
    )
    p.add_argument(
        "--out",
        required=True,
        help="folder for peek-STAGE.png per conv stage, probabilities.png and peek.json",
    )


def chains(infos: dict[str, Any]) -> dict[str, list[str]]:
    """Each conv stage → itself and the spatial stages that follow it, in forward order.

    A follower is a stage whose ``parent`` is the conv and whose maps have as many
    channels (an activation, a pool, a norm); ``infos`` is ``stage_infos(model)``.
    """
    out: dict[str, list[str]] = {}
    for name, info in infos.items():
        if info.kind == "conv":
            out[name] = [name]
        elif info.parent in out and info.spatial and info.shape[0] == infos[info.parent].shape[0]:
            out[info.parent].append(name)
    return out


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..analysis.activations import record
    from ..models import logits_stage, stage_infos
    from ..plots import probabilities_figure, tile_sheet

    model, meta = open_model(args)
    image, source = input_image(args, meta, tuple(model.input_shape[-2:]))
    infos = stage_infos(model)
    groups = chains(infos)
    wanted = [s for chain in groups.values() for s in chain]
    outputs = record(model, torch.as_tensor(image, dtype=torch.float32)[None, None], wanted)
    probs = torch.softmax(outputs[logits_stage(model)][0], 0).numpy()
    out = out_dir(args.out)
    written = []
    for conv, chain in groups.items():
        maps = [outputs[s][0].numpy() for s in chain]  # each (C, H, W)
        h, w = maps[0].shape[1:]
        # Row c: channel c at every stage of the chain; smaller maps (pooled) are blown
        # up to the conv's size without smoothing, so each pooled pixel covers its window.
        tiles = np.stack([_enlarge(m, h, w) for m in maps], axis=1).reshape(-1, h, w)
        labels = [f"{s}:{c}" for c in range(maps[0].shape[0]) for s in chain]
        # Several channels per row, so the sheet is about as wide as it is tall.
        per_row = math.ceil(math.sqrt(maps[0].shape[0] / len(chain)))
        sheet = tile_sheet(
            tiles,
            cols=len(chain) * per_row,
            scale=args.scale,
            labels=labels,
            each=True,
            title=f"{source}: {' -> '.join(chain)}, each map scaled to its own range",
        )
        sheet.save(out / f"peek-{conv}.png")
        written.append(f"peek-{conv}.png")
    predicted = int(np.argmax(probs))
    probabilities_figure(probs, title=f"{source}: predicted {predicted}").savefig(
        out / "probabilities.png", dpi=100
    )
    payload = {
        "source": source,
        "model": model.arch,  # a built-in's name, or your model's file.py:Class
        "input": np.round(image, 4).tolist(),
        "predicted": predicted,
        "probabilities": [round(float(p), 6) for p in probs],
        "chains": groups,
        "stages": {
            s: {
                **infos[s].as_dict(),
                "maps": np.round(outputs[s][0].numpy(), 5).tolist(),
            }
            for s in wanted
        },
    }
    (out / "peek.json").write_text(json.dumps(payload) + "\n")
    chains_text = "; ".join(f"{infos[c[0]].shape[0]} × {' → '.join(c)}" for c in groups.values())
    print(
        f"{source}: predicted {predicted} (p={probs[predicted]:.3f}); "
        f"{chains_text or 'no conv stages'}; wrote {out}: "
        f"{', '.join([*written, 'probabilities.png', 'peek.json'])}"
    )
    return 0


def _enlarge(maps: Any, h: int, w: int) -> Any:
    """(C, h', w') maps → (C, h, w): repeated by the whole factor, then padded with zeros."""
    import numpy as np

    _, mh, mw = maps.shape
    fy, fx = max(1, h // mh), max(1, w // mw)
    big = maps.repeat(fy, axis=1).repeat(fx, axis=2)[:, :h, :w]
    pad_y, pad_x = h - big.shape[1], w - big.shape[2]
    return np.pad(big, ((0, 0), (pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2)))
