"""Bytes and files → grey images, with pixel budgets checked before anything is decoded.

A drawing arrives as a PNG (the page's canvas) or an image file (``explain --image``). A
34 KB PNG can claim 4096×4096 pixels and cost half a gigabyte to inflate; a text chunk can
be a zip bomb of its own. So the header is read first and only the chunks a drawing needs
are kept; errors are :class:`~cnnscope.preprocess.PreprocessError` naming what is wrong.
Importing this module also lowers Pillow's own limits for the process (below).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .preprocess import PreprocessError

__all__ = ["MAX_PNG_PIXELS", "decode_png", "read_image"]

MAX_PNG_PIXELS = 4096 * 4096  # more is a decompression bomb, not a drawing

# Pillow's own limits, in case an image reaches it by another path: text chunks are
# inflated while the header is read (default 1 MB each, 64 MB in all).
PngImagePlugin.MAX_TEXT_CHUNK = min(PngImagePlugin.MAX_TEXT_CHUNK, 64 * 1024)
PngImagePlugin.MAX_TEXT_MEMORY = min(PngImagePlugin.MAX_TEXT_MEMORY, 256 * 1024)
Image.MAX_IMAGE_PIXELS = min(Image.MAX_IMAGE_PIXELS or MAX_PNG_PIXELS, MAX_PNG_PIXELS)

# Grey level v (0–255) of an opaque grey pixel → its value, computed as decode_png's sum
# does for any pixel: (R + G + B) · alpha / (3 · 255 · 255) in float32.
_GREY = (np.arange(256, dtype=np.uint32) * (3 * 255)).astype(np.float32) * np.float32(
    1.0 / (3 * 255 * 255)
)
_OPAQUE_GREY = np.uint32(0x010101)  # v in R, G and B
_OPAQUE = np.uint32(0xFF000000)  # alpha 255

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What a drawing needs: the header, a palette and its transparency, the pixels. Every
# other chunk (text, zTXt, iCCP, EXIF, animation…) is dropped unread.
_NEEDED_CHUNKS = (b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND")
# Errors Pillow raises on malformed PNGs (SyntaxError: "broken PNG file").
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error)


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


def _unfiltered_grey(data: bytes) -> np.ndarray | None:
    """The (H, W) uint8 pixels of what the page sends (``codec.js`` greyPNG): 8-bit grey,
    not interlaced, no palette or transparency, every row unfiltered; ``None`` for any
    other PNG, which Pillow decodes.

    Such a PNG is its pixels deflated with a filter byte of 0 before each row: one inflate,
    bounded by the header's size, and a view (0.1 ms for the page's 280×280 canvas, where
    Pillow took 0.4 ms). ``data`` holds only the needed chunks, its size checked.
    """
    width, height = struct.unpack(">II", data[16:24])
    if data[24:29] != b"\x08\x00\x00\x00\x00":  # bit depth, colour type, methods, interlace
        return None
    # A header Pillow would refuse (its length or CRC wrong) is left to Pillow to refuse.
    if data[8:16] != b"\x00\x00\x00\x0dIHDR" or zlib.crc32(data[12:29]) != int.from_bytes(
        data[29:33], "big"
    ):
        return None
    idat, pos = [], len(_SIGNATURE) + 25  # past the header
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind in (b"PLTE", b"tRNS", b"IHDR"):  # a second header: Pillow says what is wrong
            return None
        if kind == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    size = height * (width + 1)
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(b"".join(idat), size)  # never more than the header says
    except zlib.error:
        return None  # Pillow says what is wrong
    if len(raw) != size or not inflater.eof:
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(height, width + 1)
    if rows[:, 0].any():  # a filtered row: Pillow undoes filters
        return None
    return rows[:, 1:]


def decode_png(data: bytes, *, max_pixels: int = MAX_PNG_PIXELS) -> np.ndarray:
    """Decode a PNG (a canvas export) into a (H, W) float32 image, white ink on black.

    Transparent pixels count as black, so a canvas drawn with white strokes on a
    transparent background works as well as one drawn on black. The pixel count is
    checked from the header before anything is decompressed, and ancillary chunks
    (text, colour profiles) are dropped unread.
    """
    data = _needed_chunks(data, max_pixels)
    grey = _unfiltered_grey(data)
    if grey is not None:
        return _GREY.take(grey)  # (H, W): what Pillow's L path below gives
    try:
        img = Image.open(io.BytesIO(data), formats=["PNG"])
        if img.mode == "L" and "transparency" not in img.info:
            return _GREY.take(np.asarray(img))  # (H, W): what the RGBA path gives, cheaper
        rgba = img.convert("RGBA")
    except Image.DecompressionBombError as e:
        raise PreprocessError(f"image exceeds the limit of {max_pixels:,} pixels ({e})") from e
    except UnidentifiedImageError as e:
        raise PreprocessError(f"not a readable image ({e})") from e
    except _PIL_ERRORS as e:
        raise PreprocessError(f"could not decode the PNG ({type(e).__name__}: {e})") from e
    # Exact integer sums, then one float conversion: ~10 ms for a megapixel, where
    # converting the (H, W, 4) array to float32 first took ~90 ms, all of it holding the GIL.
    arr = np.asarray(rgba)  # (H, W, 4) uint8
    # A canvas is opaque grey (white strokes on black): each pixel, read as one uint32,
    # is its grey level v repeated in R, G and B under alpha 255, and a table gives its
    # value in one pass, the same float32 as the sum below.
    packed = arr.view("<u4")[..., 0]  # (H, W): R + G·2⁸ + B·2¹⁶ + alpha·2²⁴
    grey = packed.astype(np.uint8)  # R
    if np.array_equal(packed, grey.astype(np.uint32) * _OPAQUE_GREY + _OPAQUE):
        return _GREY.take(grey)
    total = arr[..., 0].astype(np.uint32)
    total += arr[..., 1]
    total += arr[..., 2]
    total *= arr[..., 3]  # (R + G + B) · alpha: at most 3 · 255 · 255
    return total.astype(np.float32) * np.float32(1.0 / (3 * 255 * 255))


def read_image(path: str | Path, *, max_pixels: int = MAX_PNG_PIXELS) -> np.ndarray:
    """An image file of any format Pillow reads → (H, W) float32 grey levels in [0, 1].

    The pixel count is checked from the file's header before decoding; a decompression
    bomb, an unreadable or a truncated file raises :class:`PreprocessError` naming the file.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns past Image.MAX_IMAGE_PIXELS: refuse instead.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise PreprocessError(
                        f"{path}: image of {width}×{height} pixels exceeds the limit of "
                        f"{max_pixels:,} pixels"
                    )
                gray = np.asarray(img.convert("L"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise PreprocessError(f"{path}: image exceeds the limit of {max_pixels:,} pixels") from e
    except UnidentifiedImageError as e:
        raise PreprocessError(f"{path}: not a readable image ({e})") from e
    except _PIL_ERRORS as e:
        raise PreprocessError(
            f"{path}: could not decode the image ({type(e).__name__}: {e})"
        ) from e
    return gray.astype(np.float32) / np.float32(255.0)
