from __future__ import annotations

import numpy as np
import pytest

import cnnscope
from cnnscope.preprocess import PreprocessError, prepare, to_mnist
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


@pytest.mark.parametrize(("size", "box"), [((28, 28), 20), ((32, 32), 23), ((20, 24), 14)])
def test_fit_to_the_models_size(size, box) -> None:
    """Another input size gets MNIST's proportions: the box 20/28 of the shorter side, the
    centre of mass at the middle of the field."""
    img = np.zeros((280, 280), np.float32)
    img[30:230, 200:240] = 1.0  # a tall bar, far right
    out = to_mnist(img, size)
    assert out.shape == size
    rows = np.flatnonzero(out.any(1))
    assert rows[-1] - rows[0] + 1 == box
    ys, xs = np.indices(out.shape)
    assert abs((out * ys).sum() / out.sum() - size[0] / 2) <= 0.5
    assert abs((out * xs).sum() / out.sum() - size[1] / 2) <= 0.5
    assert not to_mnist(np.zeros((280, 280)), size).any() and to_mnist(img, size).max() == 1.0


def test_fit_size_is_checked() -> None:
    with pytest.raises(PreprocessError, match="size 4×28"):
        to_mnist(np.ones((28, 28)), (4, 28))


def test_rejects_non_2d() -> None:
    with pytest.raises(PreprocessError, match="2-D"):
        to_mnist(np.zeros((3, 28, 28)))


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


# --- Each step of the drawing path on small, seeded, synthetic inputs ----------------------


def _ring(size: int = 120, radius: float = 40, width: float = 10) -> np.ndarray:
    """A ring ("0") of known stroke ``width``, centred on a (size, size) black field."""
    ys, xs = np.indices((size, size)) - (size - 1) / 2
    r = np.hypot(ys, xs)
    return (np.abs(r - radius) <= width / 2).astype(np.float32)


def test_shrink_keeps_small_images_and_shrinks_big_ones() -> None:
    from cnnscope.preprocess import LARGEST, _shrink

    small = np.random.default_rng(0).random((100, 80)).astype(np.float32)
    same, factor = _shrink(small)
    assert same is small and factor == 1.0
    big, factor = _shrink(np.ones((2 * LARGEST, LARGEST), np.float32))
    assert big.shape == (LARGEST, LARGEST // 2) and factor == 0.5
    assert np.allclose(big, 1.0)  # BOX resampling keeps the level


def test_ink_on_black_inverts_paper_only() -> None:
    from cnnscope.preprocess import ink_on_black

    ring = _ring()
    kept, inverted = ink_on_black(ring)
    assert not inverted and kept is ring
    paper, inverted = ink_on_black(1.0 - ring)
    assert inverted and np.allclose(paper, ring)
    assert prepare(1.0 - ring).inverted and not prepare(ring).inverted


def test_contrast_is_stretched_to_full_ink() -> None:
    faint = 0.3 * _ring()
    p = prepare(faint)
    assert p.image.max() == pytest.approx(1.0) and p.gain >= 1 / 0.3 - 1e-6
    assert np.allclose(p.image, prepare(_ring()).image, atol=1e-5)  # as if drawn fully


def test_specks_far_and_small_are_dropped_near_or_big_kept() -> None:
    from cnnscope.preprocess import _drop_specks

    rng = np.random.default_rng(0)
    img = _ring(200)
    y, x = rng.integers(3, 12, size=2)  # a 5-px dot in the top-left corner, far away
    img[y : y + 5, x : x + 5] = 1.0
    cleaned, dropped = _drop_specks(img)
    assert dropped == 1 and not cleaned[:20, :20].any()
    assert np.array_equal(cleaned[40:160, 40:160], img[40:160, 40:160])
    near = _ring(200)
    near[96:101, 146:151] = 1.0  # the same dot just outside the ring: part of the digit
    assert _drop_specks(near)[1] == 0
    two = _ring(200)
    two[5:25, 5:25] = 1.0  # a big second part is not a speck
    assert _drop_specks(two)[1] == 0


def test_specks_are_the_same_on_the_inks_bounding_box() -> None:
    """prepare drops specks on the crop of the ink, not the whole canvas: the same digit
    comes out, faint fringes and a dropped dot included."""
    from cnnscope.preprocess import _crop, _drop_specks

    rng = np.random.default_rng(1)
    img = np.zeros((280, 280), np.float32)
    img[60:200, 90:210] = _ring(200)[30:170, 40:160]
    img[40:45, 230:235] = 1.0  # a speck, 40 px from the ring
    img[180:185, 147:152] = 1.0  # a dot near enough to be kept
    img += rng.random(img.shape, dtype=np.float32) * 0.08 * (img == 0)  # a faint fringe
    whole, dropped = _drop_specks(img)
    cropped, dropped_cropped = _drop_specks(_crop(img))
    assert dropped == dropped_cropped == 1
    assert np.array_equal(_crop(whole, margin=2), _crop(cropped, margin=2))


def test_distance_transform_is_scipys() -> None:
    """_edt gives scipy's distances exactly, everywhere or read at given pixels."""
    from scipy import ndimage

    from cnnscope.preprocess import _edt

    rng = np.random.default_rng(0)
    for shape in [(37, 53), (120, 90)]:
        mask = ndimage.binary_opening(rng.random(shape) > 0.3)
        reference = ndimage.distance_transform_edt(mask)
        assert np.array_equal(_edt(mask), reference)
        assert np.array_equal(_edt(mask, at=mask), reference[mask])
        assert np.array_equal(_edt(~mask, at=mask), ndimage.distance_transform_edt(~mask)[mask])


def test_stroke_distances_are_scipys() -> None:
    """_inside_squared's squared distances, worked out from the strokes' edges, are SciPy's
    exactly: thin and bold strokes, a speckle, a blob past its passes (SciPy's then), a
    run long enough for int32, and an empty mask."""
    from scipy import ndimage

    from cnnscope.preprocess import _inside_squared, _width_and_extent

    rng = np.random.default_rng(0)
    yy, xx = np.indices((300, 300)) - 150
    masks = [ndimage.binary_opening(rng.random(s) > 0.3) for s in [(37, 53), (120, 90)]]
    masks += [rng.random((40, 60)) > 0.5, _ring(120, 40, 3) > 0.5, _ring(120, 40, 30) > 0.5]
    masks += [np.hypot(yy, xx) < 140, np.ones((30, 260), bool), np.zeros((9, 7), bool)]
    for mask in masks:
        padded = np.pad(mask, 1)
        ink, squared = _inside_squared(padded)
        assert np.array_equal(ink, np.flatnonzero(padded))
        distances = np.sqrt(squared.astype(np.float64))
        assert np.array_equal(distances, ndimage.distance_transform_edt(padded)[padded])
        if mask.any():
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
            assert _width_and_extent(mask) == (4.0 * (distances - 0.5).mean(), extent)


def test_median_and_clean_maximum_are_numpys() -> None:
    """The border's median and the clean image's maximum, found in fewer passes, are
    numpy's to the bit."""
    from cnnscope.preprocess import _cleaned, _median

    rng = np.random.default_rng(0)
    for values in [
        np.zeros(100, np.float32),
        rng.random(1001).astype(np.float32),
        np.round(rng.random(1000) * 3).astype(np.float32) / 3,
        (rng.random(64) * 255).astype(np.uint8),
        np.array([0.0, -0.0, 0.0, 0.25], np.float32),
    ]:
        assert np.float64(_median(values)).tobytes() == np.float64(np.median(values)).tobytes()
    assert np.isnan(_median(np.array([0.0, np.nan, 1.0], np.float32)))
    clean = rng.random((30, 20)).astype(np.float32)
    image, top = _cleaned(clean)
    assert image is clean and top.tobytes() == clean.max().tobytes()
    clean[3, 4] = -0.0  # clean as well: found by the float reductions, without the bits' max
    assert _cleaned(clean)[0] is clean
    assert _cleaned(np.full((2, 2), 2.0, np.float32))[1] is None


def test_nan_inf_and_out_of_range_values_are_cleaned_and_the_input_kept() -> None:
    from cnnscope.preprocess import _clean

    img = np.array([[np.nan, np.inf, -np.inf], [-0.5, 0.25, 7.0]], np.float32)
    assert np.array_equal(_clean(img), [[0, 1, 0], [0, 0.25, 1]])
    assert np.isnan(img[0, 0])  # not written into
    ring = _ring() * 3 - 1  # values −1 and 2
    kept = ring.copy()
    assert np.array_equal(prepare(ring).image, prepare(_ring()).image)
    assert np.array_equal(ring, kept)


def test_quick_stroke_decides_only_well_inside_mnists_range() -> None:
    """A large crop is measured at WORK pixels first; near the range's ends (or outside)
    the full-size measure decides, so the same drawings are re-stroked as before."""
    from cnnscope.preprocess import STROKE_RANGE, WORK, _extent, _quick_stroke, _stroke_width

    ordinary = _ring(240, 90, 24)  # 24 / 204 = 0.12
    quick = _quick_stroke(ordinary)
    assert quick is not None and quick == pytest.approx(_stroke_width(ordinary > 0.5), rel=0.05)
    for width in (14.0, 16.0, 50.0):  # ratios 0.071, 0.081 (within the margin), 0.23
        ring = _ring(240, 90, width)
        mask = ring > 0.5
        assert _quick_stroke(ring) is None, _stroke_width(mask) / _extent(mask)
    thin = _ring(240, 90, 10)  # 0.05: re-stroked, as the full measure says
    assert _quick_stroke(thin) is None and prepare(thin).restroked
    assert STROKE_RANGE[0] <= 14 / 194 and max(ordinary.shape) > WORK


@pytest.mark.parametrize("width", [4.0, 10.0, 16.0])
def test_stroke_width_is_measured(width: float) -> None:
    from cnnscope.preprocess import _stroke_width

    assert _stroke_width(_ring(160, 50, width) > 0.5) == pytest.approx(width, rel=0.15)


def test_offset_grows_and_shrinks_strokes() -> None:
    from cnnscope.preprocess import _offset, _stroke_width

    mask = _ring(160, 50, 10) > 0.5
    assert _stroke_width(_offset(mask, 3) > 0.5) == pytest.approx(16, rel=0.15)
    assert _stroke_width(_offset(mask, -3) > 0.5) == pytest.approx(4, rel=0.2)


def test_restroke_leaves_mnist_strokes_and_fixes_the_rest() -> None:
    from cnnscope.preprocess import (
        STROKE_RANGE,
        STROKE_THICKENED,
        _extent,
        _restroke,
        _stroke_width,
    )

    def ratio(img: np.ndarray) -> float:
        mask = img > 0.5
        return _stroke_width(mask) / _extent(mask)

    ordinary = _ring(120, 40, 12)  # 12 / 92 = 0.13: MNIST's median
    out, width, pen = _restroke(ordinary)
    assert pen == 0.0 and out is ordinary and width == pytest.approx(12, rel=0.15)
    thin = _ring(120, 40, 2)  # a thin pen
    out, width, pen = _restroke(thin)
    assert pen > width and ratio(out) == pytest.approx(STROKE_THICKENED, rel=0.1)
    bold = _ring(120, 30, 30)  # a thick brush on a small digit
    out, width, pen = _restroke(bold)
    assert 0.0 < pen < width and STROKE_RANGE[0] <= ratio(out) <= STROKE_RANGE[1]


def test_fit_places_a_seeded_blob_as_mnist_does() -> None:
    from cnnscope.preprocess import _fit

    rng = np.random.default_rng(3)
    img = np.zeros((90, 60), np.float32)
    img[10:70, 20:45] = rng.random((60, 25)).astype(np.float32) * 0.5 + 0.5
    out = _fit(img)
    rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
    assert rows[-1] - rows[0] + 1 == 20 and cols[-1] - cols[0] + 1 in (8, 9)
    ys, xs = np.indices(out.shape)
    assert abs((out * ys).sum() / out.sum() - 14) <= 0.5
    assert abs((out * xs).sum() / out.sum() - 14) <= 0.5
