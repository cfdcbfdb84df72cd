"""A drawing → an MNIST-style 28×28 image, the way MNIST's digits were made.

LeCun et al. normalised each digit to fit a 20×20 box, keeping its aspect ratio, with
anti-aliasing, then placed it in a 28×28 field so that its centre of mass lies at the
field's centre. (Measured on the test set: mean centre of mass (14.0, 14.0) in pixel
indices with a spread of 0.29 px, the spread of rounding, so the shift was whole pixels.)
A digit drawn large and off-centre on a canvas looks nothing like that until it is made to.

People's drawings differ from MNIST in more than size: black ink on white paper, a faint or
thin pen, a thick brush on a small digit, a stray dot. :func:`prepare` undoes each and says
what it did (:class:`Prepared`); :func:`to_mnist` is its image.

A model of another input size (``size=(H, W)``) gets the same digit at its scale: the box
and the centre are MNIST's fractions of the field (20/28 of the shorter side, the centre
of mass at the middle), fitted once from the drawing rather than resampled from 28×28,
so strokes are not blurred twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["Prepared", "PreprocessError", "ink_on_black", "prepare", "to_mnist"]

BOX = 20  # the digit's longer side after scaling
SIZE = 28
CENTRE = 14.0  # where MNIST put the centre of mass, in pixel indices
INK_THRESHOLD = 0.1  # fraction of the brightest pixel that counts as ink for the crop


class PreprocessError(ValueError):
    """The input is not an image cnnscope can use; the message says why."""


def to_mnist(image: np.ndarray, size: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    """A drawing → an MNIST-style (28, 28) image (or ``size``): :func:`prepare`'s ``.image``.

    Parameters
    ----------
    image
        (H, W) array, values in [0, 1]; white ink on black, or black ink on white (detected
        and inverted); any size from 8×8 up.
    size
        (H, W) of the result: the model's input size.

    Returns
    -------
    np.ndarray
        (H, W) float32 in [0, 1], (28, 28) by default. A blank image stays blank.
    """
    return prepare(image, size).image


# --- The drawing path: what a canvas, a pen or a scan does to a digit, undone ------------
#
# Measured on 2,000 MNIST training digits with `_stroke_width` at the working resolution:
# the stroke is 0.132 of the ink's longer side at the median, 0.070 at the 1st percentile
# and 0.243 at the 99th. A drawing whose stroke lies in that range is left as drawn (the
# model knows thin and bold writers); one outside it (a thick brush on a small digit, a
# thin pen on a large one) is re-stroked inside it.
STROKE_RANGE = (0.070, 0.243)  # stroke width / the ink's longer side: MNIST's 1st–99th pct
STROKE_MEDIAN = 0.132  # MNIST's median
# A thin pen is thickened to what the page's brush draws on a full-size digit (22 px on a
# 200-px path: 0.099 of the ink's extent), a little below MNIST's median: the thicker the
# new pen, the more it fills small loops and merges close strokes. Bench, 2-px pen, seeds
# 0/1/2/3: 0.132 → 97.9/98.2/98.3/98.4 %, 0.12 → 98.2/98.3/98.2/98.4, 0.10 → 98.3/98.4/
# 98.3/98.8, 0.08 → 98.6/98.5/98.3/98.5; the same paths drawn full size with the page's
# brush read 98.4/98.4/98.3/98.7, and at 0.10 the two disagree on 2 digits in 4,000.
STROKE_THICKENED = 0.10
# A thick brush on a small digit fills its loops; what survives reads best a little bolder
# than MNIST's median (bench/drawing_path.py, 45-px digits: 0.132 → 87 %, 0.17 → 88 %,
# 0.20 → 90 %, 0.23 → 90 %; still inside MNIST's range).
STROKE_THINNED = 0.20
LARGEST = 560  # larger inputs are shrunk to this first (twice the page's canvas)
WORK = 112  # crops smaller than this are upsampled first, so widths are measured finely
# Larger crops are measured first at WORK pixels (a quarter of the distance transform for
# a 220-px drawing): within this fraction of the range's ends the stroke is measured again
# at full size. Of ~5,000 digits drawn 150–230 px tall with pens of 4–40 px, the quick
# measure was 0.94–1.04 of the full one for ordinary strokes (up to 2× for a 2-px pen,
# far below the range); none was left as drawn that the full measure would re-stroke.
QUICK_MARGIN = (0.20, 0.15)  # (above the low end, below the high end), relative
# Specks: a brush-sized dot is 3–5 % of a 200-px drawing's ink; one 40 px away is dropped at
# a gap of 0.15 (at 0.20, 13 % were kept). No MNIST test digit loses a part at 28×28; of
# 1,000 redrawn at 200 px, 3 lose a noise dot (4–7 % of the ink) and none a real stroke
# (a detached top of a 2 or a 3 is 12 %: kept).
SPECK_MASS = 0.10  # a part with less ink than this fraction of the largest part …
SPECK_GAP = 0.15  # … farther than this fraction of the digit's size from it is a speck
BACKGROUND_BRIGHT = 0.5  # a border brighter than this (median) is paper: the ink is dark
_ONE_BITS = np.float32(1.0).view(np.uint32)  # 0x3F800000
# _inside_squared's passes over a mask cost (measured, int16 / int32) 6 / 8 µs at 114²
# pixels, 15 / 24 µs at 250², 83 / 305 µs at 564² (out of the cache); SciPy's feature
# transform ~27 ns a pixel (0.33, 1.6, 8.7 ms). So at most 32 passes over up to 256 KiB
# and 8 over more, then SciPy: a blob that needs more is measured in at most ~2× SciPy's
# time (a filled 150-px square: prepare 4.4 ms, 3.8 before). Typical 112-px masks need
# 5–33 passes (mean 11, 99th percentile 26).
_PASSES = (32, 8)


@dataclass(frozen=True)
class Prepared:
    """A drawing made MNIST-like, and what was done to it.

    Attributes
    ----------
    image
        (28, 28) float32 in [0, 1], white ink on black.
    inverted
        The input was dark ink on a bright background and was inverted. A page can say so.
    dropped_specks
        Parts of the drawing dropped as specks: much smaller than the digit and far from it.
    stroke_px
        The stroke width measured in the input, in input pixels (0 for a blank image).
    restroked
        The stroke lay outside MNIST's range for the digit's size and was redrawn inside it.
    gain
        The contrast stretch applied (1.0 for ink already at full brightness).
    """

    image: np.ndarray
    inverted: bool = False
    dropped_specks: int = 0
    stroke_px: float = 0.0
    restroked: bool = False
    gain: float = 1.0


def prepare(image: np.ndarray, size: tuple[int, int] = (SIZE, SIZE)) -> Prepared:
    """Make a drawing look like an MNIST digit, step by step, and say what was done.

    1. Black on white (the border's median brighter than ``BACKGROUND_BRIGHT``) is
       inverted; the background level is subtracted.
    2. The contrast is stretched so the brightest ink is 1 (faint or thin pens).
    3. Specks are dropped: parts with under ``SPECK_MASS`` of the largest part's ink,
       farther than ``SPECK_GAP`` of the digit's size from it (a stray dot, dust). A
       drawing that step 4 thickens has them judged again as it is re-stroked.
    4. The stroke width is measured against the ink's size; outside MNIST's range
       (``STROKE_RANGE``) the stroke is thickened to ``STROKE_THICKENED`` or thinned to
       ``STROKE_THINNED``.
    5. As MNIST: crop, fit in 20×20 (aspect kept, anti-aliased), centre of mass at the
       centre of 28×28 (of ``size``, the box scaled with its shorter side).

    Parameters
    ----------
    image
        (H, W) array, values in [0, 1]; any size from 8×8 up.
    size
        (H, W) of the result, the model's input size; 8 to 1,024 pixels a side.

    Returns
    -------
    Prepared
        ``.image`` is ``size`` float32 in [0, 1]; a blank image stays blank.
    """
    size = _checked(size)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise PreprocessError(f"expected a 2-D grayscale image, got shape {image.shape}")
    if image.size == 0:
        return Prepared(np.zeros(size, np.float32))
    image, brightest = _cleaned(image)
    image, shrink = _shrink(image)
    image, inverted, background = _ink_and_background(image)
    if brightest is None or shrink != 1.0 or inverted:
        brightest = image.max()
    level = np.float32(background)  # float32 arithmetic, as image - background would be
    peak = max(float(np.float32(brightest) - level), 0.0)
    if peak < 1.0 / 255:  # blank, or only the noise of an 8-bit background
        return Prepared(np.zeros(size, np.float32), inverted=inverted)
    # Every later step looks only at the pixels above the background, and at the ink's
    # bounding box after that (the crops drop the rest): a digit is a fifth of a canvas.
    rows, cols = _box(image > level)
    image = np.subtract(image[rows, cols], level)  # a new array: the steps below write in it
    np.clip(image, 0.0, None, out=image)
    np.divide(image, peak, out=image)
    image = _crop(image)
    kept, dropped = _drop_specks(image)
    # `image` is its own ink's bounding box, so `_crop(image, margin=2)` is only the margin.
    padded = _margin(image, 2)
    crop, width_px, pen = _restroke(padded if kept is image else _crop(kept, margin=2))
    if dropped and pen > width_px:
        # A thin pen leaves a broken stroke in lighter pieces with wider gaps than the
        # page's brush does: judged as drawn, a 7's dashed bar is dropped as specks. Judge
        # them on the drawing as it is re-stroked, where they look as the brush draws them.
        crop, dropped = _drop_specks(_redraw(padded, width_px, pen))
    # Left as drawn with nothing dropped, `crop` is `padded`, whose brightest pixel is
    # exactly 1 ((brightest − level) / peak, peak being that difference): _fit's ink box, at
    # INK_THRESHOLD × 1, is `image` itself.
    out = _place(image, size) if crop is padded else _fit(crop, size)
    top = float(out.max())
    gain = 1.0 / peak
    if 0.0 < top < 1.0:
        out, gain = out / top, gain / top
    return Prepared(
        out.astype(np.float32),
        inverted=inverted,
        dropped_specks=dropped,
        stroke_px=width_px / shrink,
        restroked=pen > 0.0,
        gain=gain,
    )


def _clean(image: np.ndarray) -> np.ndarray:
    """``image`` (float32) with NaN as 0 and values clipped to [0, 1], as a new array.

    A decoded drawing is clean already: two fast reductions say so (NaN fails both tests)
    and it is copied as it is. Otherwise as ``np.clip(np.nan_to_num(image), 0, 1)`` in two
    passes: ``fmax`` turns NaN into 0 (it prefers the number), ±inf is clipped to 1 or 0.
    """
    return _cleaned(image)[0]


def _cleaned(image: np.ndarray) -> tuple[np.ndarray, np.float32 | None]:
    """:func:`_clean` of a float32 ``image``, and its maximum when it was clean already.

    The first pass over a canvas is most of the cost of both: in a loop over 500 decoded
    canvases it takes 35–100 µs (the canvas comes from memory; in the server, decoding
    has just written it), a second one ~5 µs. So one pass: the bits of the floats in
    [+0.0, 1.0] are the unsigned integers up to 1.0's, in the same order, and every other
    float's (negative, −0.0, above 1, inf, NaN) is larger. Their maximum says whether the
    image is clean and, read as a float, is its maximum. An image with −0.0 is clean too
    and is told by the two float reductions as before.
    """
    if image.dtype == np.float32:
        top_bits = image.view(np.uint32).max()
        if top_bits <= _ONE_BITS:
            return image, top_bits.view(np.float32)  # no later step writes into its input
    if image.min() >= 0.0 and image.max() <= 1.0:
        return image, None
    out: np.ndarray = np.fmax(image, np.float32(0.0))
    np.minimum(out, np.float32(1.0), out=out)
    return out, None


def _shrink(image: np.ndarray) -> tuple[np.ndarray, float]:
    """A photo or a big export shrunk to ``LARGEST`` pixels: the steps after it cost time
    in proportion to the pixels, and the digit ends up 20 pixels tall anyway."""
    if max(image.shape) <= LARGEST:
        return image, 1.0
    shrink = LARGEST / max(image.shape)
    size = (max(1, round(image.shape[1] * shrink)), max(1, round(image.shape[0] * shrink)))
    return np.asarray(Image.fromarray(image, mode="F").resize(size, Image.Resampling.BOX)), shrink


def _restroke(crop: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The crop with its stroke inside MNIST's range for its size, the stroke width measured
    and the new one (in crop pixels; 0.0 when left as drawn)."""
    if max(crop.shape) > WORK:
        quick = _quick_stroke(crop)
        if quick is not None:
            return crop, quick, 0.0
    mask, factor = _fine_mask(crop)
    width, length = _width_and_extent(mask)
    if STROKE_RANGE[0] <= width / length <= STROKE_RANGE[1]:
        return crop, width / factor, 0.0
    # Keep the pen's path, change the pen: the ink's extent is path + one stroke width,
    # and the new stroke is `goal` of the new extent.
    path = max(length - width, 1.0)
    goal = STROKE_THICKENED if width < STROKE_RANGE[0] * length else STROKE_THINNED
    target = goal * path / (1.0 - goal)
    redrawn = _offset(mask, (target - width) / 2)
    if redrawn.max() < 0.5:  # a dot is not thinned away
        return crop, width / factor, 0.0
    return redrawn, width / factor, target / factor


def _redraw(crop: np.ndarray, width: float, pen: float) -> np.ndarray:
    """The strokes of ``crop``, ``width`` pixels wide, redrawn ``pen`` wide, as
    :func:`_restroke` does (in crop pixels; its result is upsampled as it is)."""
    mask, factor = _fine_mask(crop)
    return _offset(mask, (pen - width) * factor / 2)


def _fine_mask(crop: np.ndarray) -> tuple[np.ndarray, int]:
    """The ink of ``crop`` (above half) and the upsampling factor it was measured at: small
    crops are upsampled to ``WORK`` so a stroke of 2 pixels is measured to a fraction of one."""
    factor = max(1, -(-WORK // max(crop.shape)))  # ceil
    fine = crop
    if factor > 1:
        h, w = crop.shape
        fine = np.asarray(
            Image.fromarray(crop, mode="F").resize(
                (w * factor, h * factor), Image.Resampling.BILINEAR
            )
        )
    mask = fine > 0.5
    if not mask.any():
        mask = fine > 0.5 * float(fine.max())
    return mask, factor


def _quick_stroke(crop: np.ndarray) -> float | None:
    """The stroke width of a large ``crop`` (in its pixels), measured with the crop
    box-averaged down to ``WORK`` pixels, when it lies well inside MNIST's range (by
    ``QUICK_MARGIN``); ``None`` when the full-size measure must decide."""
    h, w = crop.shape
    scale = WORK / max(h, w)
    small = Image.fromarray(crop, mode="F").resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX
    )
    mask = np.asarray(small) > 0.5
    if not mask.any():
        return None
    width, length = _width_and_extent(mask)
    ratio = width / length
    low, high = STROKE_RANGE[0] * (1 + QUICK_MARGIN[0]), STROKE_RANGE[1] * (1 - QUICK_MARGIN[1])
    return width / scale if low <= ratio <= high else None


def ink_on_black(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """``image`` as white ink on black: inverted when its border is bright paper
    (median above ``BACKGROUND_BRIGHT``). Returns the image and whether it was inverted."""
    ink, inverted, _ = _ink_and_background(image)
    return ink, inverted


def _ink_and_background(image: np.ndarray) -> tuple[np.ndarray, bool, float]:
    """:func:`ink_on_black`, and the background level after it (its border's median)."""
    border = _border(image)
    level = _median(border)
    if level <= BACKGROUND_BRIGHT:
        return image, False, level
    return 1.0 - image, True, _median(1.0 - border)


def _median(values: np.ndarray) -> float:
    """``float(np.median(values))`` of a flat array (a border, from :func:`_border`).

    A drawing's border is all zeros: their median is +0.0, said by one pass over the bits
    (3 µs for a 280² canvas's border; np.median 44 µs). Otherwise what np.median does, the
    same partition and the same mean of the middle one or two, without its wrapper.
    """
    bits = values.view(np.uint32 if values.dtype == np.float32 else np.uint8)
    if not bits.any():
        return 0.0
    n = values.size
    half = n // 2
    if n % 2:
        kth, middle = [half, -1], slice(half, half + 1)
    else:
        kth, middle = [half - 1, half, -1], slice(half - 1, half + 1)
    part = np.partition(values, kth)
    if np.isnan(part[-1]):  # np.median's answer when there is a NaN (it sorts last)
        return float("nan")
    return float(part[middle].mean())


def _border(image: np.ndarray) -> np.ndarray:
    """The outer ring of pixels, 3 % of the shorter side deep (at least one pixel)."""
    k = max(1, round(0.03 * min(image.shape)))
    return np.concatenate(
        [image[:k].ravel(), image[-k:].ravel(), image[k:-k, :k].ravel(), image[k:-k, -k:].ravel()]
    )


def _drop_specks(image: np.ndarray) -> tuple[np.ndarray, int]:
    """Zero the parts of ``image`` (ink in [0, 1]) that are small and far from the digit."""
    from scipy import ndimage

    labels, n = ndimage.label(image > INK_THRESHOLD, structure=np.ones((3, 3)))
    if n <= 1:
        return image, 0
    mass = ndimage.sum_labels(image, labels, index=np.arange(1, n + 1))
    keep = mass >= SPECK_MASS * mass.max()
    ink = labels > 0
    parts = labels[ink]  # (ink pixels,) in raster order, as _edt reads them
    while True:
        kept = np.isin(labels, np.flatnonzero(keep) + 1)
        gap = _edt(~kept, at=ink)  # each ink pixel's distance to the nearest kept ink
        near = ndimage.minimum(gap, parts, index=np.arange(1, n + 1))
        limit = SPECK_GAP * _extent(kept)
        grown = keep | (np.asarray(near) <= limit)
        if (grown == keep).all():
            break
        keep = grown
    if keep.all():
        return image, 0
    # Faint fringes (below the ink threshold) go with the part they border.
    nearest = ndimage.distance_transform_edt(
        labels == 0, return_distances=False, return_indices=True
    )
    owner = labels[nearest[0], nearest[1]]  # (H, W) label of the nearest ink
    kept = np.isin(owner, np.flatnonzero(keep) + 1)
    return np.where(kept, image, 0.0).astype(np.float32), int((~keep).sum())


def _crop(image: np.ndarray, margin: int = 0) -> np.ndarray:
    """The bounding box of the ink (above ``INK_THRESHOLD``), with ``margin`` zeros around."""
    rows, cols = _box(image > INK_THRESHOLD)
    return _margin(image[rows, cols], margin)


def _margin(image: np.ndarray, margin: int) -> np.ndarray:
    """``np.pad(image, margin)`` as a new float32 array: np.pad costs 30–50 µs of Python a
    call, zeros and a slice assignment a few."""
    h, w = image.shape
    out = np.zeros((h + 2 * margin, w + 2 * margin), np.float32)
    out[margin : margin + h, margin : margin + w] = image
    return out


def _box(mask: np.ndarray) -> tuple[slice, slice]:
    """The (rows, columns) of the bounding box of ``mask``'s True pixels (IndexError if
    none); the columns are looked for only in its rows."""
    rows = np.flatnonzero(mask.any(axis=1))
    top, bottom = rows[0], rows[-1] + 1
    cols = np.flatnonzero(mask[top:bottom].any(axis=0))
    return slice(top, bottom), slice(cols[0], cols[-1] + 1)


def _extent(mask: np.ndarray) -> float:
    """The longer side of the mask's bounding box, in pixels."""
    rows, cols = _box(mask)
    return float(max(rows.stop - rows.start, cols.stop - cols.start))


def _stroke_width(mask: np.ndarray) -> float:
    """The mean width of the strokes in ``mask``, in pixels.

    Inside a band w pixels wide the distance to its edge runs evenly from 0 to w/2, so
    its mean is w/4: the width is 4 × the mean distance of ink pixels to the background
    (pixel centres lie half a pixel inside the edge, hence the 0.5).
    """
    _, inside = _inside(mask)
    return float(4.0 * (inside - 0.5).mean())


def _width_and_extent(mask: np.ndarray) -> tuple[float, float]:
    """:func:`_stroke_width` and :func:`_extent` of a mask with ink, the extent read off
    the ink pixels the width needs anyway (two reductions over the mask fewer)."""
    ink, inside = _inside(mask)
    ys, xs = np.divmod(ink, mask.shape[1] + 2)  # raster order: first and last rows at the ends
    extent = max(ys[-1] - ys[0] + 1, xs.max() - xs.min() + 1)
    return float(4.0 * (inside - 0.5).mean()), float(extent)


def _inside(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mask`` padded with one pixel of background: the flat indices of its ink (raster
    order) and their distances to the background, ``_edt(padded, at=padded)``."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), bool)  # np.pad(mask, 1), without its 30–50 µs
    padded[1:-1, 1:-1] = mask
    ink, squared = _inside_squared(padded)
    return ink, np.sqrt(squared.astype(np.float64))


def _inside_squared(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flat indices of the True pixels of ``mask`` (raster order) and the squared
    distance of each to the nearest False one, exactly: what ``_edt(mask, at=mask) ** 2``
    is, for a mask whose outer ring is False (a padded one).

    SciPy's feature transform takes ~30 ns a pixel (0.3 ms for a 112-px mask); a stroke is
    a few pixels wide, so this one works outward from the edges instead. Along each row
    the distance to the background is the distance to the ends of the pixel's run of ink
    (a row starts and ends with background, so runs of the flattened mask never wrap).
    The squared distance is then the least over rows y' of (y − y')² + that along row y',
    and no row farther than the largest result so far can lower it: as many passes over
    the mask as the widest stroke's half-width in pixels. Integers throughout, so exact.
    A blob is no stroke: past ``_PASSES`` passes SciPy, whose cost is the pixels', is used.
    """
    h, w = mask.shape
    flat = mask.ravel()
    ink = np.flatnonzero(flat)
    if not ink.size:
        return ink, np.zeros(0, np.int32)
    # Where the mask changes: a run's first pixel, then the background pixel after it.
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    before, ends = edges[::2] - 1, edges[1::2]
    lengths = ends - before - 1
    along = np.minimum(ink - np.repeat(before, lengths), np.repeat(ends, lengths) - ink)
    longest = int(along.max())
    # Every value below is under 2 × longest²: int16 when it fits (twice as fast).
    dtype = np.int16 if 2 * longest * longest < 2**15 else np.int32
    rows = np.zeros(h * w, dtype)
    rows[ink] = along * along
    rows = rows.reshape(h, w)
    best = rows.copy()
    shifted = np.empty_like(rows)
    k = 1
    while int(best.max()) > k * k:
        if k > _PASSES[best.nbytes > 2**18]:
            return ink, _squared_edt(mask, at=mask)
        np.add(rows, k * k, out=shifted)
        np.minimum(best[k:], shifted[:-k], out=best[k:])
        np.minimum(best[:-k], shifted[k:], out=best[:-k])
        k += 1
    return ink, best.ravel()[ink]


def _edt(mask: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
    """``scipy.ndimage.distance_transform_edt(mask)``, the same float64 values, read only
    at the pixels of ``at`` (a flat array in raster order) or everywhere.

    SciPy's feature transform (for each pixel, the nearest pixel outside ``mask``) is its
    cheap half; turning it into distances over the whole (2, H, W) array in float64 was
    the other half of the time. Here the squared distance is an exact int32 and only the
    pixels asked for are converted.
    """
    distances: np.ndarray = _squared_edt(mask, at).astype(np.float64)
    np.sqrt(distances, out=distances)
    return distances


def _squared_edt(mask: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
    """:func:`_edt` squared, as exact integers."""
    from scipy import ndimage

    nearest = ndimage.distance_transform_edt(mask, return_distances=False, return_indices=True)
    if at is None:
        dy = nearest[0] - np.arange(mask.shape[0], dtype=np.int32)[:, None]
        dx = nearest[1] - np.arange(mask.shape[1], dtype=np.int32)[None, :]
    else:
        ys, xs = np.nonzero(at)
        dy, dx = nearest[0][ys, xs] - ys, nearest[1][ys, xs] - xs
    squared: np.ndarray = dy * dy + dx * dx
    return squared


def _offset(mask: np.ndarray, delta: float) -> np.ndarray:
    """Grow (``delta`` > 0) or shrink every stroke's edge by ``delta`` pixels, anti-aliased.

    A stroke drawn with a round pen of radius R, shrunk by R − r, is the same path drawn
    with radius r (a loop the thick pen filled stays filled). Returns ink in [0, 1], padded
    so grown strokes fit.
    """
    pad = max(0, int(np.ceil(delta)) + 2)
    mask = np.pad(mask, pad)
    inside = _edt(mask) - 0.5
    outside = _edt(~mask) - 0.5
    signed = np.where(mask, inside, -outside)  # > 0 in the ink, < 0 outside
    out: np.ndarray = np.clip(signed + delta + 0.5, 0.0, 1.0).astype(np.float32)
    return out


def _checked(size: tuple[int, int]) -> tuple[int, int]:
    """``size`` as (H, W) ints, each 8–1,024: a digit needs room, and a side bounds the work."""
    h, w = (int(v) for v in size)
    if not (8 <= h <= 1024 and 8 <= w <= 1024):
        raise PreprocessError(f"size {h}×{w}: each side must be 8–1,024 pixels")
    return h, w


def _fit(image: np.ndarray, size: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    """Crop the ink, fit it in 20×20 (aspect kept, anti-aliased), centre its mass in 28×28.

    For another ``size`` (H, W) the box is 20/28 of the shorter side and the centre of mass
    lands at (H/2, W/2), as 14 is half of 28.
    """
    image = np.asarray(image, np.float32)  # PIL's mode "F" reads float32 only
    peak = float(image.max())
    if peak <= 0.0:
        return np.zeros(size, np.float32)
    rows, cols = _box(image > INK_THRESHOLD * peak)
    return _place(image[rows, cols], size)


def _place(crop: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """:func:`_fit` of ``crop`` (float32) that is its own ink's bounding box already."""
    field_h, field_w = size
    box = max(1, round(BOX * min(size) / SIZE))
    h, w = crop.shape
    scale = box / max(h, w)
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
    top = round(CENTRE * field_h / SIZE - com_y)
    left = round(CENTRE * field_w / SIZE - com_x)
    # Keep the whole box inside the field even for lopsided digits.
    top = min(max(top, 0), field_h - new_h)
    left = min(max(left, 0), field_w - new_w)
    out = np.zeros(size, np.float32)
    out[top : top + new_h, left : left + new_w] = crop
    return out
