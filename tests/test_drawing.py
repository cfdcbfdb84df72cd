"""The drawing path (`preprocess.prepare`): each step on small seeded inputs with known
answers, and accuracy on MNIST test digits redrawn as people draw them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

import cnnscope
from cnnscope.preprocess import (
    STROKE_MEDIAN,
    STROKE_RANGE,
    STROKE_THICKENED,
    Prepared,
    prepare,
    to_mnist,
)
from tests.support.rerender import (
    BRUSH,
    THIN_PEN,
    _thin,
    draw,
    inverted,
    stroke,
    with_stray_dot,
)


def _segments(*points: tuple[float, float]) -> np.ndarray:
    """A polyline through (y, x) points → segments (S, 2, 2)."""
    p = np.asarray(points, np.float64)
    return np.stack([p[:-1], p[1:]], axis=1)


def _relative_stroke(image: np.ndarray) -> float:
    """Stroke width / longer side of the ink, as `prepare` measures it (28×28 input)."""
    return prepare(image).stroke_px / _ink_extent(image)


def _ink_extent(image: np.ndarray) -> float:
    """The ink's longer side, in pixels; measured 4× upsampled, as `prepare` does for
    small images."""
    h, w = image.shape
    big = Image.fromarray(image.astype(np.float32), mode="F")
    big = big.resize((4 * w, 4 * h), Image.Resampling.BILINEAR)
    ink = np.asarray(big) > 0.5 * image.max()
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return float(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)) / 4


def test_blank_and_uniform_images_stay_blank() -> None:
    assert not to_mnist(np.zeros((280, 280))).any()
    assert not to_mnist(np.ones((280, 280))).any()  # white paper, nothing drawn
    p = prepare(np.ones((50, 50)))
    assert p.inverted and not p.image.any()


def test_prepare_reports_an_ordinary_drawing_as_untouched(mnist) -> None:
    x = mnist.test_images[0].numpy() / 255.0
    p = prepare(draw(x, np.random.default_rng(0), 200, BRUSH))
    assert isinstance(p, Prepared) and p.image.shape == (28, 28) and p.image.dtype == np.float32
    assert not p.inverted and p.dropped_specks == 0 and not p.restroked and p.gain == 1.0
    assert 20 <= p.stroke_px <= 24  # the brush is 22 px


def test_black_on_white_is_detected_and_inverted(mnist) -> None:
    x = mnist.test_images[1].numpy() / 255.0
    white = draw(x, np.random.default_rng(1), 200, BRUSH)
    p, q = prepare(inverted(white)), prepare(white)
    assert p.inverted and not q.inverted
    np.testing.assert_allclose(p.image, q.image, atol=1e-5)
    # A grey sheet with darker ink: inverted, and its background taken off.
    grey = 0.8 - 0.6 * white
    r = prepare(grey)
    assert r.inverted and np.abs(r.image - q.image).max() < 0.02


def test_a_stray_dot_is_dropped_and_the_digit_kept(mnist) -> None:
    x = mnist.test_images[2].numpy() / 255.0
    rng = np.random.default_rng(2)
    clean = draw(x, rng, 200, BRUSH)
    dotted = with_stray_dot(clean, rng)
    assert (dotted > clean).sum() > 300  # a brush-sized dot was added
    p = prepare(dotted)
    assert p.dropped_specks == 1
    np.testing.assert_allclose(p.image, to_mnist(clean), atol=1e-6)


def test_separate_strokes_of_a_digit_are_kept() -> None:
    # A 4 in two strokes, and a 5 whose top bar was drawn apart from its body.
    four = np.maximum(
        stroke(_segments((40, 110), (150, 80), (150, 200)), BRUSH),
        stroke(_segments((60, 175), (240, 175)), BRUSH),
    )
    four[:, 160:166] = 0  # a small gap: the strokes do not touch
    five = np.maximum(
        stroke(_segments((40, 90), (40, 190)), BRUSH),
        stroke(
            _segments((62, 90), (130, 85), (120, 160), (180, 170), (235, 120), (220, 80)), BRUSH
        ),
    )
    five[49:54] = 0  # the bar floats a few pixels above the body
    for drawing in (four, five):
        assert ndimage.label(drawing > 0.1)[1] == 2  # two parts
        p = prepare(drawing)
        assert p.dropped_specks == 0
        np.testing.assert_allclose(p.image.sum(), to_mnist(drawing).sum(), rtol=1e-6)


def test_a_thick_brush_on_a_small_digit_comes_out_with_mnist_stroke(mnist) -> None:
    x = mnist.test_images[3].numpy() / 255.0
    small = draw(x, np.random.default_rng(3), 45, BRUSH)
    p = prepare(small)
    assert p.restroked and 20 <= p.stroke_px <= 26
    lo, hi = STROKE_RANGE
    assert lo <= _relative_stroke(p.image) <= hi
    # Before, the brush filled the box: the stroke was a third of the digit's size or more.
    assert p.stroke_px / _ink_extent(small) > 0.3


def test_a_faint_thin_pen_is_stretched_and_thickened(mnist) -> None:
    x = mnist.test_images[4].numpy() / 255.0
    faint = 0.4 * draw(x, np.random.default_rng(4), 200, THIN_PEN)
    p = prepare(faint)
    assert p.restroked and p.gain == pytest.approx(2.5, rel=1e-3) and p.stroke_px < 4
    assert p.image.max() == pytest.approx(1.0)
    lo, hi = STROKE_RANGE
    assert lo <= _relative_stroke(p.image) <= hi
    assert (p.image > 0.5).sum() > 60  # a real stroke, not a faint trace


def test_a_thin_pen_comes_out_as_the_page_brush_draws_the_same_path(mnist) -> None:
    # Thickened to MNIST's median (0.132), a thin pen came out a third bolder than the page's
    # brush draws a full-size digit (0.099), and read worse (bench: 97.9 % against 98.4 %).
    for i in range(5, 10):
        x = mnist.test_images[i].numpy() / 255.0
        thin = prepare(draw(x, np.random.default_rng(i), 200, THIN_PEN))
        full = prepare(draw(x, np.random.default_rng(i), 200, BRUSH))
        assert thin.restroked and not full.restroked
        ratio = _relative_stroke(thin.image) / _relative_stroke(full.image)
        assert ratio == pytest.approx(1.0, abs=0.12)
        assert _relative_stroke(thin.image) == pytest.approx(STROKE_THICKENED, rel=0.15)


def test_a_thin_pens_broken_stroke_is_kept_as_the_brushs_is() -> None:
    # A 7 whose bar was drawn apart from its body. Judged as a 2-px pen drew it, the bar was
    # a speck (light, and the thin pen leaves a wide gap); the page's brush drawing the same
    # path keeps it, and so does the thin pen once it is judged as it is re-stroked.
    body = _segments((60, 180), (240, 110))
    for gap in (32, 40):  # between the pen's paths
        bar = _segments((60, 180 - gap), (60, 164 - gap))
        for pen in (THIN_PEN, BRUSH):
            p = prepare(np.maximum(stroke(body, pen), stroke(bar, pen)))
            assert p.dropped_specks == 0 and p.restroked == (pen == THIN_PEN), (gap, pen)
    # A thin pen's stray dot far from the digit still goes.
    dot = _segments((250, 194), (250, 194))
    p = prepare(np.maximum(stroke(body, THIN_PEN), stroke(dot, THIN_PEN)))
    assert p.dropped_specks == 1 and p.restroked
    np.testing.assert_array_equal(p.image, to_mnist(stroke(body, THIN_PEN)))


def test_the_stroke_range_is_mnists(mnist) -> None:
    # STROKE_RANGE and STROKE_MEDIAN were measured on training digits; test digits agree.
    images = mnist.test_images[:300].numpy() / 255.0
    rel = np.array([_relative_stroke(x) for x in images])
    assert abs(np.median(rel) - STROKE_MEDIAN) < 0.015
    lo, hi = STROKE_RANGE
    assert 0.005 <= ((rel < lo) | (rel > hi)).mean() <= 0.06  # ≈ 2 % outside by design


def test_an_mnist_digit_passes_through_essentially_unchanged(mnist) -> None:
    images = mnist.test_images[:100].numpy() / 255.0
    out = np.stack([to_mnist(x) for x in images])
    diff = np.abs(out - images).mean(axis=(1, 2))
    # Most come back identical; the few whose stroke lies outside MNIST's 1st–99th
    # percentile are re-stroked, and still look like themselves.
    assert np.median(diff) < 1e-4 and (diff < 0.01).sum() >= 90 and diff.max() < 0.1
    assert sum(prepare(x).restroked for x in images) <= 5


@pytest.mark.slow
def test_redrawn_digits_are_read(mnist) -> None:
    """200 test digits redrawn on the canvas; thresholds a little below the bench's goals."""
    model, _ = cnnscope.load_model("deep_mnist")
    model.eval()
    images = mnist.test_images[:200].numpy()
    labels = mnist.test_labels[:200].numpy()

    def acc(drawings: list[np.ndarray]) -> float:
        batch = torch.from_numpy(np.stack([to_mnist(d) for d in drawings]))[:, None]
        with torch.no_grad():
            return float((model(batch).argmax(1).numpy() == labels).mean())

    # Measured (this seed): 99.5 % full size, black on white and with a dot; 99 % with the
    # 2-px pen; 92.5 % at 45 px and 80 % at 30 px with the page's brush.
    rng = np.random.default_rng(0)
    full = [draw(x, rng, 200, BRUSH) for x in images]
    ordinary = acc(full)
    assert ordinary >= 0.97
    assert acc([inverted(d) for d in full]) >= ordinary - 0.01
    assert acc([with_stray_dot(d, rng) for d in full]) >= ordinary - 0.01
    assert acc([draw(x, rng, 200, THIN_PEN) for x in images]) >= 0.97
    assert acc([draw(x, rng, 45, BRUSH) for x in images]) >= 0.88
    assert acc([draw(x, rng, 30, BRUSH) for x in images]) >= 0.75


def test_a_dot_and_a_large_image_are_read() -> None:
    dot = np.zeros((28, 28), np.float32)
    dot[13, 13] = 1.0
    assert prepare(dot).image.max() == pytest.approx(1.0)  # not thinned away
    big = np.zeros((2800, 2800), np.float32)
    big[420:2380, 1260:1480] = 1.0  # a "1" on a photo ten times the canvas
    small = np.zeros((280, 280), np.float32)
    small[42:238, 126:148] = 1.0  # the same on the canvas
    diff = np.abs(to_mnist(big) - to_mnist(small))
    assert diff.mean() < 0.01 and diff.max() < 0.15


def test_the_simulated_pen_draws_its_width() -> None:
    line = stroke(_segments((40, 140), (240, 140)), BRUSH)
    assert line[140].sum() == pytest.approx(BRUSH, abs=0.5)  # across the line: 22 px of ink
    assert line[140, 140] == 1.0 and line[5, 140] == 0.0
    thin = stroke(_segments((40, 140), (240, 140)), THIN_PEN)
    assert thin[140].sum() == pytest.approx(THIN_PEN, abs=0.2)
    bar = np.zeros((40, 40), bool)
    bar[10:30, 15:22] = True
    skel = _thin(bar)
    assert skel.sum(axis=1).max() == 1 and skel.sum() >= 12  # one pixel wide, most of 20 long
