"""A model out to the ecosystem: ONNX (checked with ONNX Runtime) or TorchScript.

The exported graph is the model as cnnscope sees it: (N, C, H, W) floats in [0, 1],
white ink on black, in; (N, classes) logits out. A ``--normalize`` given at load time is
inside the graph, so the file needs no preprocessing beyond cnnscope's own.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._extras import require
from .devices import device_of
from .models import StagedModel

__all__ = ["FORMATS", "check_onnx", "export_model"]

FORMATS = ("onnx", "torchscript")
_MAX_BATCH = 4096


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The ONNX exporter logs and warns about things that do not concern the user (absent
    torchvision ops, deprecations inside torch); keep the command's output to its result."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_model(model: StagedModel, fmt: str, out: str | os.PathLike[str]) -> Path:
    """Write ``model`` as ``fmt`` (``onnx`` or ``torchscript``) to ``out``.

    ONNX has a dynamic batch dimension (input ``image``, output ``logits``); it needs the
    ``[onnx]`` extra (onnx, onnxruntime, onnxscript). TorchScript is a traced module that
    ``torch.jit.load`` reads back.

    Examples
    --------
    >>> export_model(model, "onnx", "net.onnx")
    PosixPath('net.onnx')
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: valid: {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give a file name such as model.{fmt}")
    out.parent.mkdir(parents=True, exist_ok=True)
    device = device_of(model)
    try:
        return _export(model.eval().cpu(), fmt, out)  # traced on the CPU: a portable file
    finally:
        model.to(device)  # the caller's model stays where it ran


def _export(model: StagedModel, fmt: str, out: Path) -> Path:
    x = torch.rand(2, *model.input_shape)  # (2, C, H, W): a batch of 2 keeps the dim free
    if fmt == "torchscript":
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(model, x)
        traced.save(str(out))
        return out
    require("onnx", "onnx", "cnnscope export --format onnx")
    require("onnxscript", "onnx", "cnnscope export --format onnx")
    batch = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
    # One self-contained file: recent torch writes the weights beside it (``out.data``)
    # unless told, and a copy of the .onnx alone then fails to load. These models are far
    # below protobuf's 2 GB limit.
    one_file: dict[str, Any] = (
        {"external_data": False} if _takes(torch.onnx.export, "external_data") else {}
    )
    with _quiet():
        torch.onnx.export(
            model,
            (x,),
            str(out),
            dynamo=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},
            verbose=False,
            **one_file,
        )
    return out


def _takes(fn: Any, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def check_onnx(
    model: StagedModel, path: str | os.PathLike[str], n: int = 8, seed: int = 0
) -> float:
    """Largest absolute difference between ONNX Runtime's logits and PyTorch's.

    Run on ``n`` seeded random images; a faithful export differs by float rounding only
    (about 1e-6).
    """
    ort = require("onnxruntime", "onnx", "checking an ONNX export")
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *model.input_shape, generator=g)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        want = model.eval()(x.to(device_of(model))).cpu().numpy()
    return float(np.abs(got - want).max())
