"""How one number of a stage is computed: ``POST /api/arithmetic``.

Validated against the served model's StageInfo (422 naming the field), computed by
:func:`cnnscope.analysis.arithmetic.unit_arithmetic` on the fast worker pool, on the
served model under its lock, as ``/api/predict`` does (one forward pass, a few ms).
"""

from __future__ import annotations

from fastapi import APIRouter

from ...analysis.arithmetic import ARITHMETIC_KINDS, unit_arithmetic
from ..encoding import encode
from ..schemas import ArithmeticRequest, ArithmeticResponse
from ..state import ServedModel, State, unprocessable
from .predict import input_image

router = APIRouter()


def _check(m: ServedModel, req: ArithmeticRequest) -> None:
    """422 naming the first field that does not fit the model's stages."""
    valid = [s.name for s in m.stages.values() if s.kind in ARITHMETIC_KINDS]
    info = m.stages.get(req.stage)
    if info is None or info.kind not in ARITHMETIC_KINDS:
        raise unprocessable(
            "stage", f"{req.stage[:64]!r} has no arithmetic in {m.id}; valid: {', '.join(valid)}"
        )
    shape = info.shape if info.spatial else (info.shape[0], 1, 1)
    for name, v, n in zip(("channel", "y", "x"), (req.channel, req.y, req.x), shape, strict=True):
        if v >= n:
            raise unprocessable(name, f"{v} is outside {req.stage}'s {n} (0 … {n - 1})")


def _arithmetic(m: ServedModel, req: ArithmeticRequest) -> ArithmeticResponse:
    image, _ = input_image(req, m)
    try:
        with m.lock:  # the shared model, as /api/predict: the very numbers it recorded
            a = unit_arithmetic(m.model, image, req.stage, req.channel, req.y, req.x)
    except ValueError as e:  # a foreign layer this cannot spell out (grouped, not zero-padded)
        raise unprocessable("stage", str(e)) from e
    return ArithmeticResponse(model=m.id, input=encode(image, per_map=False), **a.as_dict())


@router.post("/api/arithmetic", response_model=ArithmeticResponse)
async def arithmetic(req: ArithmeticRequest, state: State) -> ArithmeticResponse:
    m = state.served(req.model)
    _check(m, req)
    return await state.fast.run(_arithmetic, m, req)
