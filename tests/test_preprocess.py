from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import cnnscope
from cnnscope.preprocess import PreprocessError, decode_png, to_mnist
from tests.support.rerender import agreement, rerender


def test_blank_stays_blank() -> None:
    assert not to_mnist(np.zeros((280, 280))).any()


def test_box_fits_20_and_mass_is_centred() -> None:
    img = np.zeros((280, 280), np.float32)
    img[30:230, 200:240] = 1.0  # a tall bar, far right
    out = to_mnist(img)
    rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
    assert rows[-1] - rows[0] + 1 == 20  # the longer side fills the 20-pixel box
    assert cols[-1] - cols[0] + 1 <= 6  # aspect ratio kept (40:200 → 4 px)
    ys, xs = np.indices(out.shape)
    assert abs((out * ys).sum() / out.sum() - 14) <= 0.5
    assert abs((out * xs).sum() / out.sum() - 14) <= 0.5


def test_rejects_non_2d() -> None:
    with pytest.raises(PreprocessError, match="2-D"):
        to_mnist(np.zeros((3, 28, 28)))


def test_decode_png_alpha_counts_as_black() -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[2:5, 2:5] = [255, 255, 255, 255]  # opaque white ink
    rgba[6:8, 6:8] = [255, 255, 255, 0]  # transparent white: background
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    gray = decode_png(buf.getvalue())
    assert gray[3, 3] == 1.0 and gray[7, 7] == 0.0 and gray[0, 0] == 0.0


def test_rerendered_digits_come_back_and_classify_the_same(mnist, capsys) -> None:
    """1,000 test digits drawn 5–9× larger at random places on a 280×280 canvas."""
    model, _ = cnnscope.load_model("deep_mnist")
    images = mnist.test_images[:1000].numpy()
    result = agreement(model, images, seed=0)
    with capsys.disabled():
        print(
            f"\npreprocessing: {result['agreement']:.1%} of {result['count']} re-rendered digits "
            f"classified as their originals; mean |Δpixel| {result['mean_abs_diff']:.3f}"
        )
    assert result["agreement"] >= 0.98
    assert result["mean_abs_diff"] < 0.05
    # A single digit, checked by eye in numbers: close to the original everywhere.
    x = images[0] / 255.0
    assert np.abs(to_mnist(rerender(x, np.random.default_rng(1))) - x).mean() < 0.05


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
