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
