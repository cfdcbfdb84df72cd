"""plots.tile_sheet: the numpy + Pillow grid, checked pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest

from cnnscope.plots import tile_sheet


def test_tiles_land_where_expected_enlarged_without_smoothing() -> None:
    images = np.array([[[0.0, 1.0], [0.5, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])  # (2, 2, 2)
    sheet = np.asarray(tile_sheet(images, cols=2, scale=3, gap=1))
    # 1 + 2·(6 + 1) wide, 1 + 6 + 1 high; white paper between the tiles.
    assert sheet.shape == (8, 15, 3)
    first = sheet[1:7, 1:7, 0]
    expected = np.kron(np.array([[0, 255], [128, 0]]), np.ones((3, 3), np.uint8))
    assert np.array_equal(first, expected)
    assert (sheet[1:7, 8:14] == 255).all()  # the all-ones tile
    assert (sheet[:, 7] == 255).all() and (sheet[0] == 255).all()  # the gaps


def test_values_above_one_read_as_0_to_255_and_cols_wrap() -> None:
    images = np.full((5, 4, 4), 51.0)
    sheet = np.asarray(tile_sheet(images, cols=2, scale=1, gap=2))
    assert sheet.shape == (2 + 3 * 6, 2 + 2 * 6, 3)
    assert sheet[2, 2, 0] == 51 and sheet[2 + 2 * 6, 2 + 6, 0] == 255  # tile 5 absent: paper


def test_signed_is_diverging_about_zero_and_each_uses_its_own_range() -> None:
    images = np.array([[[-2.0, 0.0, 1.0]], [[0.0, 0.01, 0.02]]])  # (2, 1, 3)
    r, g, b = np.asarray(tile_sheet(images, cols=2, scale=1, gap=0, signed=True))[0, :3].T
    assert b[0] > r[0]  # negative: blue
    assert r[2] > b[2]  # positive: red
    assert min(r[1], g[1], b[1]) > 240  # zero: (near) white
    dim = np.asarray(tile_sheet(images[1:], scale=1, gap=0, each=True))[0, :, 0]
    assert list(dim) == [0, 128, 255]  # stretched to its own min–max
    flat = np.asarray(tile_sheet(np.zeros((1, 2, 2)), scale=1, gap=0, each=True))
    assert (flat == 0).all()  # a constant map stays black, no division by zero


def test_labels_title_and_boxes() -> None:
    images = np.zeros((2, 10, 10))
    plain = tile_sheet(images, cols=2, scale=2)
    labelled = tile_sheet(images, cols=2, scale=2, labels=["a", "a much longer caption"])
    assert labelled.height > plain.height and labelled.width > plain.width
    titled = tile_sheet(images, cols=2, scale=2, title="a title")
    assert titled.height > plain.height
    boxed = np.asarray(tile_sheet(images, cols=1, scale=2, gap=0, boxes=[(1, 2, 5, 6), None]))
    assert tuple(boxed[2, 4]) == (245, 165, 36)  # the box's top-left corner, in orange
    assert (boxed[20:40] == 0).all()  # the second tile has no box


def test_empty_and_malformed_input() -> None:
    assert tile_sheet(np.zeros((0, 28, 28))).size[0] > 0
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        tile_sheet(np.zeros((28, 28)))


def test_figures_are_not_kept_by_pyplot() -> None:
    """A command run many times in one process (a test suite, a notebook) made a pyplot
    figure each time and kept it: past 20, pyplot warned (an error under the suite)."""
    import matplotlib.pyplot as plt

    from cnnscope.analysis.attribution import Attribution
    from cnnscope.plots import attribution_figure

    before = len(plt.get_fignums())
    image = np.zeros((28, 28), np.float32)
    found = Attribution(np.ones((28, 28)), "saliency", 3, [0.1] * 10)
    for _ in range(25):
        fig = attribution_figure(image, [found])
        assert len(fig.axes) == 2
    assert len(plt.get_fignums()) == before
