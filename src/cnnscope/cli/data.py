"""``cnnscope data``: find the data, verify its checksums, show the splits."""

from __future__ import annotations

import argparse
import json

from ._common import add_data_flag

HELP = "find the data, verify its checksums and show the splits"


def add(p: argparse.ArgumentParser) -> None:
    add_data_flag(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from ..data import load_mnist

    data = load_mnist(args.data_dir, download=True)
    info = {
        "source": str(data.source),
        "sha256": data.checksum,
        "train": len(data.train_images),
        "validation": len(data.validation_images),
        "test": len(data.test_images),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"data: {info['source']} (checksums verified)")
        sizes = "  ".join(f"{k} {info[k]:,}" for k in ("train", "validation", "test"))
        print(f"splits: {sizes}")
        print(f"content sha256: {info['sha256']}")
    return 0
