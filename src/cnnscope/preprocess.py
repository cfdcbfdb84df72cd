"""A drawing → an MNIST-style 28×28 image, the way MNIST's digits were made.

LeCun et al. normalised each digit to fit a 20×20 box, keeping its aspect ratio, with
anti-aliasing, then placed it in a 28×28 field so that its centre of mass lies at the
field's centre. (Measured on the test set: mean centre of mass (14.0, 14.0) in pixel
indices with a spread of 0.29 px, the spread of rounding, so the shift was whole pixels.)
A digit drawn large and off-centre on a canvas looks nothing like that until it is made to.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["PreprocessError", "decode_png", "to_mnist"]

BOX = 20  # the digit's longer side after scaling
SIZE = 28
CENTRE = 14.0  # where MNIST put the centre of mass, in pixel indices
INK_THRESHOLD = 0.1  # fraction of the brightest pixel that counts as ink for the crop
MAX_PNG_PIXELS = 4096 * 4096  # more is a decompression bomb, not a drawing


class PreprocessError(ValueError):
    """The input is not an image cnnscope can use; the message says why."""


def to_mnist(image: np.ndarray) -> np.ndarray:
    """Crop the ink, fit it in 20×20 (aspect kept, anti-aliased), centre its mass in 28×28.

    Parameters
    ----------
    image
        (H, W) array, white ink on black, values in [0, 1]; any size from 8×8 up.

    Returns
    -------
    np.ndarray
        (28, 28) float32 in [0, 1]. A blank image stays blank.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise PreprocessError(f"expected a 2-D grayscale image, got shape {image.shape}")
    peak = float(image.max()) if image.size else 0.0
    if peak <= 0.0:
        return np.zeros((SIZE, SIZE), np.float32)
    rows = np.flatnonzero((image > INK_THRESHOLD * peak).any(axis=1))
    cols = np.flatnonzero((image > INK_THRESHOLD * peak).any(axis=0))
    crop = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # (h, w)

    h, w = crop.shape
    scale = BOX / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        # Float mode keeps the grey levels; LANCZOS low-passes when shrinking (anti-alias).
        crop = np.asarray(
            Image.fromarray(crop, mode="F").resize((new_w, new_h), Image.Resampling.LANCZOS)
        )
        crop = np.clip(crop, 0.0, 1.0)

    total = float(crop.sum())
    ys, xs = np.arange(new_h, dtype=np.float64), np.arange(new_w, dtype=np.float64)
    com_y = float(crop.sum(axis=1) @ ys) / total
    com_x = float(crop.sum(axis=0) @ xs) / total
    top, left = round(CENTRE - com_y), round(CENTRE - com_x)
    # Keep the whole box inside the field even for lopsided digits.
    top = min(max(top, 0), SIZE - new_h)
    left = min(max(left, 0), SIZE - new_w)
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top : top + new_h, left : left + new_w] = crop
    return out


def decode_png(data: bytes, *, max_pixels: int = MAX_PNG_PIXELS) -> np.ndarray:
    """Decode a PNG (a canvas export) into a (H, W) float32 image, white ink on black.

    Transparent pixels count as black, so a canvas drawn with white strokes on a
    transparent background works as well as one drawn on black.
    """
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise PreprocessError(f"image exceeds the limit of {max_pixels:,} pixels ({e})") from e
    except (UnidentifiedImageError, OSError) as e:
        raise PreprocessError(f"not a readable image ({e})") from e
    if img.format != "PNG":
        raise PreprocessError(f"expected a PNG, got {img.format}")
    width, height = img.size
    if width * height > max_pixels:
        # Checked from the header, before any pixel is decompressed.
        raise PreprocessError(
            f"image of {width}×{height} pixels exceeds the limit of {max_pixels:,} pixels"
        )
    try:
        rgba = img.convert("RGBA")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise PreprocessError(f"could not decode the PNG ({e})") from e
    arr = np.asarray(rgba, dtype=np.float32) / 255.0  # (H, W, 4)
    gray = arr[..., :3].mean(axis=2) * arr[..., 3]
    return gray.astype(np.float32)
