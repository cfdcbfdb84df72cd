"""``cnnscope data``: find a data set, check it, and describe it."""

from __future__ import annotations

import argparse
import json

from ._common import add_data_flag

HELP = "check and describe a data set: format, sizes, classes, per-class counts, checksum"


def add(p: argparse.ArgumentParser) -> None:
    add_data_flag(
        p,
        "a folder with the four IDX files or one .npz (x_train, y_train, x_test, y_test), "
        "or the .npz itself, with an optional classes.txt beside it; default: MNIST",
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from ..data import DataError, load_data

    # Only a test split found (the MNIST test set inside the package) is a description
    # too: evaluation works on it; training will say where the training files go.
    try:
        data = load_data(args.data_dir, download=True)
    except DataError:
        if args.data_dir is not None:
            raise
        data = load_data(None, download=False, need="test")
    info = data.describe()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    h, w = info["image_size"]
    print(f"data: {info['source']} ({info['format']}, checks passed)")
    print(
        f"images: {h}×{w} grayscale; train {info['train']:,}  validation "
        f"{info['validation']:,}  test {info['test']:,}"
        + ("" if data.has_train else "  (test set only: training needs the training files)")
    )
    print(f"classes: {data.num_classes}")
    width = max(5, *(len(c) for c in data.classes))
    print(f"  {'class':<{width}}  {'train':>8}  {'test':>7}")
    for k, name in enumerate(data.classes):
        print(f"  {name:<{width}}  {info['train_counts'][k]:>8,}  {info['test_counts'][k]:>7,}")
    print(f"content sha256: {info['sha256']}")
    return 0
