from __future__ import annotations

import numpy as np
import pytest

import cnnscope
from cnnscope.preprocess import PreprocessError, to_mnist
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
