"""The wire format of arrays: uint8 per map between its own min and max, base64.

The page's ``codec.js`` decodes the same format; :func:`decode` is its Python twin, used by
the tests and by anyone scripting the HTTP API.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from .schemas import EncodedStage

__all__ = ["b64", "decode", "encode", "encode_rows"]


def b64(data: bytes) -> str:
    """Bytes as ASCII base64 (pixels of test digits, images, filters)."""
    return base64.b64encode(data).decode("ascii")


def encode(values: np.ndarray, per_map: bool) -> EncodedStage:
    """uint8-quantise ``values`` (C, H, W) per map, or a vector (or one image) as one map."""
    return encode_rows(values[None], per_map)[0]


def encode_rows(values: np.ndarray, per_map: bool) -> list[EncodedStage]:
    """:func:`encode` of each row of ``values`` (B, ...), in one pass over the batch.

    A batched prediction's stage is encoded at once: the numpy calls are paid once per
    batch, not once per image, and each row comes out exactly as ``encode`` makes it.
    """
    b = values.shape[0]
    maps = values.reshape(b * values.shape[1], -1) if per_map else values.reshape(b, -1)
    lo = maps.min(axis=1, keepdims=True)
    hi = maps.max(axis=1, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    # rint((maps - lo) / span · 255) in place: one array instead of four.
    q = maps - lo
    if not np.issubdtype(q.dtype, np.floating):
        q = q.astype(np.float64)  # as the division made it
    q /= span
    q *= 255.0
    np.rint(q, out=q)
    data = q.astype(np.uint8).reshape(b, -1)
    # Python floats of the exact values, rounded as round(float(v), 6) would: tolist()
    # makes them in one call instead of one numpy scalar each.
    mins = [round(v, 6) for v in lo[:, 0].tolist()]
    maxs = [round(v, 6) for v in hi[:, 0].tolist()]
    n = len(mins) // b  # maps per row
    return [
        # Built from checked values: pydantic's validation of ~200 floats is skipped.
        EncodedStage.model_construct(
            shape=list(values.shape[1:]),
            min=mins[i * n : (i + 1) * n],
            max=maxs[i * n : (i + 1) * n],
            data=b64(data[i].tobytes()),
        )
        for i in range(b)
    ]


def decode(encoded: EncodedStage | dict[str, Any]) -> np.ndarray:
    """The float32 array an :func:`encode` answer stands for (within half a step per map)."""
    enc = encoded.model_dump() if isinstance(encoded, EncodedStage) else encoded
    q = np.frombuffer(base64.b64decode(enc["data"]), np.uint8).astype(np.float32)
    maps = q.reshape(len(enc["min"]), -1)
    lo = np.asarray(enc["min"], np.float32)[:, None]
    hi = np.asarray(enc["max"], np.float32)[:, None]
    return (lo + maps / 255.0 * (hi - lo)).reshape(enc["shape"]).astype(np.float32)
