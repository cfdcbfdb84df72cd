"""A data set in one NumPy ``.npz``: ``x_train, y_train, x_test, y_test``.

Images are uint8 (0–255) or floats in [0, 1], shaped (N, H, W) or (N, 1, H, W); labels
are integers 0..K-1. Everything is checked before use, and the file is opened with
``allow_pickle=False``: an ``.npz`` that holds Python objects is refused, never unpickled.
Float images are stored as uint8 (``round(x × 255)``), the form every view works on.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["KEYS", "MAX_NPZ_BYTES", "MAX_SIDE", "read_npz"]

KEYS = ("x_train", "y_train", "x_test", "y_test")
MAX_NPZ_BYTES = 1 << 31  # decompressed, all arrays together: as for one IDX file
MAX_SIDE = 1024  # pixels per image side; more is not a small-CNN data set
_HOW = (
    "save it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...) "
    "using numeric arrays"
)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The four arrays of ``path``: images uint8 (N, H, W), labels int64 (N,).

    Raises
    ------
    DataError
        Naming the file, what is wrong (a missing key, mismatched lengths, NaN, floats
        outside [0, 1], negative labels, an absurd size, pickled objects) and the fix.
    """
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(info.file_size for info in z.infolist())
            if total <= MAX_NPZ_BYTES:
                total = sum(_declared_bytes(path, z, info) for info in z.infolist())
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(f"{path}: not an .npz archive ({e}); {_HOW}.") from e
    if total > MAX_NPZ_BYTES:
        raise DataError(
            f"{path}: its arrays hold {total:,} bytes, more than the {MAX_NPZ_BYTES:,} "
            "cnnscope reads; use a smaller data set."
        )
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: no array {', '.join(missing)} (it has "
                    f"{', '.join(npz.files) or 'none'}); {_HOW}."
                )
            for key in KEYS:
                arrays[key] = npz[key]
    except ValueError as e:  # object arrays: numpy refuses them without allow_pickle
        raise DataError(
            f"{path}: holds pickled Python objects ({e}), which cnnscope never loads; {_HOW}."
        ) from e
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: unreadable ({e}); the file is corrupt, {_HOW}.") from e
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        x = _images(path, f"x_{split}", arrays[f"x_{split}"])
        y = _labels(path, f"y_{split}", arrays[f"y_{split}"])
        if len(x) != len(y):
            raise DataError(
                f"{path}: x_{split} has {len(x)} images but y_{split} {len(y)} labels; "
                "give one label per image."
            )
        out[f"{split}_images"], out[f"{split}_labels"] = x, y
    if out["train_images"].shape[1:] != out["test_images"].shape[1:]:
        raise DataError(
            f"{path}: x_train images are {out['train_images'].shape[1:]} but x_test "
            f"{out['test_images'].shape[1:]}; both splits need one image size."
        )
    return out


def _declared_bytes(path: Path, z: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """The bytes the ``.npy`` header of one member declares, checked against what the
    member holds, before numpy allocates anything: a header may claim any shape."""
    if not info.filename.endswith(".npy"):
        return 0
    key = info.filename[: -len(".npy")]
    with z.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        except ValueError as e:
            raise DataError(f"{path}: {key} is not a NumPy array ({e}); {_HOW}.") from e
        header = f.tell()
    if dtype.hasobject:
        raise DataError(
            f"{path}: {key} holds pickled Python objects, which cnnscope never loads; {_HOW}."
        )
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared != info.file_size - header:
        raise DataError(
            f"{path}: {key} declares {declared:,} bytes of data but holds "
            f"{info.file_size - header:,}; the file is damaged or crafted, {_HOW}."
        )
    return declared


def _images(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, 1, H, W), uint8 or floats in [0, 1] → uint8 (N, H, W)."""
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise DataError(
            f"{path}: {key} has shape {x.shape}; give grayscale images (N, H, W) or (N, 1, H, W)."
        )
    if not (1 <= x.shape[1] <= MAX_SIDE and 1 <= x.shape[2] <= MAX_SIDE):
        raise DataError(
            f"{path}: {key} images are {x.shape[1]}×{x.shape[2]}; cnnscope takes sides of "
            f"1–{MAX_SIDE} pixels. Resize the images."
        )
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DataError(f"{path}: {key} holds NaN or infinite values; remove those images.")
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if lo < 0 or hi > 1:
            raise DataError(
                f"{path}: {key} floats span {lo:g}–{hi:g}; give floats in [0, 1] (divide "
                "0–255 values by 255) or uint8."
            )
        return np.rint(x.astype(np.float64) * 255).astype(np.uint8)
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        if lo < 0 or hi > 255:
            raise DataError(f"{path}: {key} integers span {lo}–{hi}; give 0–255 (uint8).")
        return x.astype(np.uint8)
    raise DataError(f"{path}: {key} has dtype {x.dtype}; give uint8 or float images.")


def _labels(path: Path, key: str, y: np.ndarray) -> np.ndarray:
    """(N,) non-negative integers → int64."""
    if y.ndim != 1:
        raise DataError(f"{path}: {key} has shape {y.shape}; give one integer label per image.")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: {key} has dtype {y.dtype}; give integer labels 0..K-1.")
    if len(y) and int(y.min()) < 0:
        raise DataError(f"{path}: {key} holds label {int(y.min())}; labels are 0..K-1.")
    return y.astype(np.int64)
