"""``cnnscope export``: a model as ONNX (checked against ONNX Runtime) or TorchScript."""

from __future__ import annotations

import argparse

from ._common import add_model_flags, open_model

HELP = "write a model as ONNX or TorchScript (for onnxruntime, netron, C++)"


def add(p: argparse.ArgumentParser) -> None:
    add_model_flags(p)
    p.add_argument(
        "--format",
        default="onnx",
        choices=["onnx", "torchscript"],
        help="onnx (needs the [onnx] extra; checked with onnxruntime) or torchscript",
    )
    p.add_argument("--out", required=True, help="the file to write, e.g. model.onnx")


def run(args: argparse.Namespace) -> int:
    from ..export import check_onnx, export_model
    from ..models import num_classes

    model, _ = open_model(args)
    path = export_model(model, args.format, args.out)
    shape = "×".join(map(str, model.input_shape))
    note = ""
    if args.format == "onnx":
        note = f"; onnxruntime matches PyTorch to {check_onnx(model, path):.1e}"
    print(
        f"wrote {path} ({args.format}, input N×{shape} in [0, 1], {num_classes(model)} "
        f"logits out){note}"
    )
    return 0
