"""Shared fixtures: tiny seeded IDX data sets, the real MNIST shipped in data/mnist."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnscope.data import FILES, MNIST, load_mnist


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> None:
    """Write ``array`` (uint8) as a gzipped IDX file."""
    magic = magic if magic is not None else 0x0800 + array.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_idx_dir(folder: Path, n_train: int = 120, n_test: int = 40, seed: int = 0) -> Path:
    """Four tiny IDX files: each image is its label drawn as a bright bar in a known row."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 30, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 + 2 * k, 4:24] = 255
        prefix = "t10k" if split == "test" else "train"
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def write_sums(folder: Path) -> None:
    lines = [
        f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in FILES.values()
    ]
    (folder / "SHA256SUMS").write_text("".join(lines))


def pytest_configure(config: pytest.Config) -> None:
    # Keep caches (predictions, downloads) out of the user's home: tests are hermetic.
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cnnscope-test-cache-")


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    return make_idx_dir(tmp_path / "tiny")


@pytest.fixture(scope="session")
def mnist() -> MNIST:
    """The real MNIST from the repository's data/mnist (no download)."""
    return load_mnist(download=False)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def shapes_dir(tmp_path: Path) -> Path:
    """A 4-class .npz data set (bar, pillar, cross, ring) with classes.txt."""
    from tests.support.shapes import write_shapes

    return write_shapes(tmp_path / "shapes")
