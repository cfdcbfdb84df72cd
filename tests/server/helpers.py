"""Test-only helpers of the server tests."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def png(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray((image * 255).astype(np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def png_bytes(image: np.ndarray, **save: object) -> bytes:
    """``image`` (H, W) in 0–1 as PNG bytes; ``save`` goes to Pillow (pnginfo, icc_profile)."""
    buf = io.BytesIO()
    Image.fromarray((image * 255).astype(np.uint8)).save(buf, format="PNG", **save)
    return buf.getvalue()


def digit_canvas(digit: np.ndarray, size: int = 280) -> np.ndarray:
    """An MNIST digit (28, 28) in 0–1 drawn large on a ``size``² black canvas."""
    big = np.asarray(Image.fromarray(digit.astype(np.float32), mode="F").resize((size, size)))
    return np.clip(big, 0, 1)


def b64png(data: bytes) -> str:
    return base64.b64encode(data).decode()
