from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnscope.decode import decode_png, read_image
from cnnscope.preprocess import PreprocessError


def test_decode_png_alpha_counts_as_black() -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[2:5, 2:5] = [255, 255, 255, 255]  # opaque white ink
    rgba[6:8, 6:8] = [255, 255, 255, 0]  # transparent white: background
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    gray = decode_png(buf.getvalue())
    assert gray[3, 3] == 1.0 and gray[7, 7] == 0.0 and gray[0, 0] == 0.0


@pytest.mark.parametrize("mode", ["L", "RGBA", "RGB", "LA", "P"])
def test_decode_png_is_the_mean_of_rgb_times_alpha_in_every_mode(mode: str) -> None:
    """Grey canvases (an L PNG, an opaque grey RGBA one) take a shortcut: the same float32
    values as the general (R + G + B) · alpha / (3 · 255²)."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    img = Image.fromarray(grey).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    rgba = np.asarray(img.convert("RGBA")).astype(np.uint32)
    total = (rgba[..., 0] + rgba[..., 1] + rgba[..., 2]) * rgba[..., 3]
    expected = total.astype(np.float32) * np.float32(1.0 / (3 * 255 * 255))
    out = decode_png(buf.getvalue())
    assert out.dtype == np.float32 and np.array_equal(out, expected)


def test_decode_png_coloured_and_translucent() -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    rgba[0, 0] = [30, 60, 90, 255]  # opaque, not grey
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    out = decode_png(buf.getvalue())
    assert out[0, 0] == pytest.approx(60 / 255)
    wide = rgba.astype(np.float64)
    expected = wide[..., :3].sum(-1) * wide[..., 3] / (3 * 255 * 255)
    assert np.allclose(out, expected, atol=1e-6)


def _png(image: np.ndarray, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((image * 255).astype(np.uint8)).save(buf, format="PNG", **save)
    return buf.getvalue()


def test_decode_png_checks_pixels_from_the_header_first() -> None:
    import time

    data = _png(np.zeros((4096, 4096)))
    t0 = time.perf_counter()
    with pytest.raises(PreprocessError, match="4096×4096 pixels exceeds the limit of 1,000"):
        decode_png(data, max_pixels=1000)
    assert time.perf_counter() - t0 < 0.05


def test_decode_png_drops_ancillary_chunks_unread() -> None:
    from PIL.PngImagePlugin import PngInfo

    rng = np.random.default_rng(0)
    image = rng.random((40, 30))
    info = PngInfo()
    info.add_text("big", "x" * 5_000_000, zip=True)  # inflates past Pillow's 1 MB cap
    noisy = _png(image, pnginfo=info, icc_profile=b"\0" * 5_000_000)
    assert np.array_equal(decode_png(noisy), decode_png(_png(image)))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\xff\xd8\xff\xe0" + b"\0" * 40, "expected a PNG, got a JPEG"),
        (b"hello world", "expected a PNG"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "no IHDR"),
    ],
)
def test_decode_png_rejects_non_pngs(data, words) -> None:
    with pytest.raises(PreprocessError, match=words):
        decode_png(data)


def test_decode_png_rejects_truncated_and_corrupt_files() -> None:
    data = _png(np.ones((20, 20)) * 0.5)
    with pytest.raises(PreprocessError, match="truncated"):
        decode_png(data[:-20])
    corrupt = bytearray(data)
    corrupt[45] ^= 0xFF  # inside IDAT: a CRC (or inflate) error
    with pytest.raises(PreprocessError):
        decode_png(bytes(corrupt))


def test_read_image_refuses_bombs_and_junk_naming_the_file(tmp_path) -> None:
    ok = tmp_path / "ok.jpg"
    Image.fromarray(np.full((30, 40), 200, np.uint8)).save(ok)
    gray = read_image(ok)
    assert (
        gray.shape == (30, 40) and gray.dtype == np.float32 and abs(gray.mean() - 200 / 255) < 0.02
    )
    bomb = tmp_path / "bomb.png"
    Image.new("L", (20_000, 20_000)).save(bomb)  # ~20 kB, 400 M pixels (past Pillow's own cap)
    with pytest.raises(PreprocessError, match=r"bomb\.png: .*exceeds the limit"):
        read_image(bomb)
    big = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(big)
    with pytest.raises(PreprocessError, match=r"big\.png: image of 300×300 pixels exceeds"):
        read_image(big, max_pixels=10_000)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(PreprocessError, match=r"junk\.png: not a readable image"):
        read_image(junk)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(ok.read_bytes()[:200])
    with pytest.raises(PreprocessError, match=r"cut\.png"):
        read_image(truncated)


def _page_png(pixels: np.ndarray, idat: bytes | None = None, filters: int = 0) -> bytes:
    """An 8-bit grey PNG as the page's greyPNG writes it: every row unfiltered."""
    h, w = pixels.shape
    rows = np.zeros((h, w + 1), np.uint8)
    rows[:, 0], rows[:, 1:] = filters, pixels

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    body = chunk(b"IDAT", zlib.compress(rows.tobytes()) if idat is None else idat)
    return b"\x89PNG\r\n\x1a\n" + header + body + chunk(b"IEND", b"")


def test_the_pages_unfiltered_grey_png_is_read_without_pillow_and_as_pillow_reads_it(
    monkeypatch,
) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    data = _page_png(pixels)
    want = decode_png(_png(pixels / 255.0))  # Pillow's L path
    assert np.array_equal(Image.open(io.BytesIO(data)), pixels)  # a valid PNG
    monkeypatch.setattr("cnnscope.decode.Image.open", None)  # Pillow is not used
    assert np.array_equal(decode_png(data), want)


def test_an_unfiltered_grey_png_inflates_no_more_than_its_header_says() -> None:
    # 100×100 pixels claimed, 100 MB of zeros deflated to 100 kB: never inflated whole.
    bomb = _page_png(np.zeros((100, 100), np.uint8), idat=zlib.compress(bytes(100_000_000), 9))
    tracemalloc.start()
    try:
        image = decode_png(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert image.shape == (100, 100) and not image.any()
    assert peak < 2_000_000, peak
    filtered = _page_png(np.full((4, 4), 3, np.uint8), filters=1)  # Sub: Pillow's path
    assert np.allclose(decode_png(filtered)[0], np.array([3, 6, 9, 12]) / 255)


def test_a_header_pillow_refuses_is_refused_on_the_fast_path_too() -> None:
    # The fast path decoded a page-like PNG whose header CRC was wrong, where Pillow (and
    # so the server before it) answered 400.
    good = _page_png(np.full((8, 8), 200, np.uint8))
    with pytest.raises(PreprocessError):
        decode_png(good[:29] + bytes(4) + good[33:])
    # A second header is Pillow's to judge: the fast path leaves it alone.
    other = _page_png(np.full((4, 16), 200, np.uint8))
    twice = good[:33] + other[8:33] + good[33:]
    try:
        pillow = np.asarray(Image.open(io.BytesIO(twice)).convert("L"))
    except Exception:  # whatever Pillow refuses, decode_png refuses
        with pytest.raises(PreprocessError):
            decode_png(twice)
    else:
        assert np.array_equal(decode_png(twice), pillow / 255.0)
