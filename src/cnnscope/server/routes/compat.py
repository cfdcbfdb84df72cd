"""The 2017 TensorFlow demo's protocol: its page posts 784 numbers (0–255), paints the answer."""

from __future__ import annotations

from typing import Annotated, Any

import torch
from fastapi import APIRouter, Body, HTTPException

from ...analysis.activations import StageRecorder
from ..schemas import Pixel255
from ..state import ServedModel, State

router = APIRouter()

_NEEDED = ("relu1", "pool1", "relu2", "pool2")
_OLD_NAMES = ("h_conv1", "h_pool1", "h_conv2", "h_pool2")


@router.post("/predict")
async def predict_compat(
    pixels: Annotated[list[Pixel255], Body(min_length=784, max_length=784)], state: State
) -> dict[str, list[Any]]:
    m = state.served(None)
    if m.input_size != (28, 28):  # the 2017 page draws and posts 28×28
        h, w = m.input_size
        raise HTTPException(
            400, f"/predict sends 28×28 digits; {m.id} takes {h}×{w}: use /api/predict"
        )
    if any(n not in m.stages for n in _NEEDED):
        raise HTTPException(
            400, f"/predict needs a model with stages {', '.join(_NEEDED)}; {m.id} lacks them"
        )
    return await state.fast.run(_answer, m, pixels)


def _answer(m: ServedModel, pixels: list[float]) -> dict[str, list[Any]]:
    """The old demo's answer, on a worker thread."""
    x = torch.tensor(pixels, dtype=torch.float32).view(1, 1, 28, 28) / 255.0
    with m.lock, torch.no_grad(), StageRecorder(m.model, list(_NEEDED)) as rec:
        logits = m.model(x)[0]
    out: dict[str, list[Any]] = {}
    for old, name in zip(_OLD_NAMES, _NEEDED, strict=True):
        v = rec.outputs[name][0]  # (C, H, W), ≥ 0 after ReLU
        peak = float(v.max())
        # Whole numbers: the old page paints Math.round(value), so nothing is lost,
        # and the answer is a third of the size of float text.
        scaled = v * (255.0 / peak) if peak > 0 else v
        out[old] = scaled.round().to(torch.uint8).tolist()
    out["y_conv"] = logits.tolist()
    return out
