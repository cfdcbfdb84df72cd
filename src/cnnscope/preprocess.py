"""A drawing → an MNIST-style 28×28 image, the way MNIST's digits were made.

LeCun et al. normalised each digit to fit a 20×20 box, keeping its aspect ratio, with
anti-aliasing, then placed it in a 28×28 field so that its centre of mass lies at the
field's centre. (Measured on the test set: mean centre of mass (14.0, 14.0) in pixel
indices with a spread of 0.29 px, the spread of rounding, so the shift was whole pixels.)
A digit drawn large and off-centre on a canvas looks nothing like that until it is made to.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

__all__ = ["PreprocessError", "decode_png", "to_mnist"]

BOX = 20  # the digit's longer side after scaling
SIZE = 28
CENTRE = 14.0  # where MNIST put the centre of mass, in pixel indices
INK_THRESHOLD = 0.1  # fraction of the brightest pixel that counts as ink for the crop
MAX_PNG_PIXELS = 4096 * 4096  # more is a decompression bomb, not a drawing

# Pillow's own limits, in case an image reaches it by another path: text chunks are
# inflated while the header is read (default 1 MB each, 64 MB in all).
PngImagePlugin.MAX_TEXT_CHUNK = min(PngImagePlugin.MAX_TEXT_CHUNK, 64 * 1024)
PngImagePlugin.MAX_TEXT_MEMORY = min(PngImagePlugin.MAX_TEXT_MEMORY, 256 * 1024)
Image.MAX_IMAGE_PIXELS = min(Image.MAX_IMAGE_PIXELS or MAX_PNG_PIXELS, MAX_PNG_PIXELS)

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What a drawing needs: the header, a palette and its transparency, the pixels. Every
# other chunk (text, zTXt, iCCP, EXIF, animation…) is dropped unread.
_NEEDED_CHUNKS = (b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND")
# Errors Pillow raises on malformed PNGs (SyntaxError: "broken PNG file").
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error)


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


def _needed_chunks(data: bytes, max_pixels: int) -> bytes:
    """The PNG ``data`` with only the chunks a drawing needs, its size checked first.

    Walks the chunk list (a few microseconds) so that neither a huge pixel count nor a
    compressed ancillary chunk costs anything before it is refused.
    """
    if not data.startswith(_SIGNATURE):
        kind = "a JPEG" if data.startswith(b"\xff\xd8") else "bytes that are not a PNG"
        raise PreprocessError(f"expected a PNG, got {kind}")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise PreprocessError("not a readable PNG (no IHDR header chunk)")
    width, height = struct.unpack(">II", data[16:24])
    if width * height > max_pixels:
        raise PreprocessError(
            f"image of {width}×{height} pixels exceeds the limit of {max_pixels:,} pixels"
        )
    if width == 0 or height == 0:
        raise PreprocessError(f"image of {width}×{height} pixels is empty")
    kept, pos = [_SIGNATURE], len(_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise PreprocessError(f"truncated PNG: chunk {kind!r} runs past the end")
        if kind in _NEEDED_CHUNKS:
            kept.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            break
    return b"".join(kept)


def decode_png(data: bytes, *, max_pixels: int = MAX_PNG_PIXELS) -> np.ndarray:
    """Decode a PNG (a canvas export) into a (H, W) float32 image, white ink on black.

    Transparent pixels count as black, so a canvas drawn with white strokes on a
    transparent background works as well as one drawn on black. The pixel count is
    checked from the header before anything is decompressed, and ancillary chunks
    (text, colour profiles) are dropped unread.
    """
    data = _needed_chunks(data, max_pixels)
    try:
        img = Image.open(io.BytesIO(data), formats=["PNG"])
        rgba = img.convert("RGBA")
    except Image.DecompressionBombError as e:
        raise PreprocessError(f"image exceeds the limit of {max_pixels:,} pixels ({e})") from e
    except UnidentifiedImageError as e:
        raise PreprocessError(f"not a readable image ({e})") from e
    except _PIL_ERRORS as e:
        raise PreprocessError(f"could not decode the PNG ({type(e).__name__}: {e})") from e
    arr = np.asarray(rgba, dtype=np.float32) / 255.0  # (H, W, 4)
    gray = arr[..., :3].mean(axis=2) * arr[..., 3]
    return gray.astype(np.float32)
