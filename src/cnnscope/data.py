"""MNIST-layout data sets: IDX reading, checksums, look-up, the classic splits.

The four files of MNIST (and of any data set in the same layout, such as Fashion-MNIST)
are read whole into memory as uint8 tensors: 55 MB for MNIST, which makes every later
batch a slice instead of a trip through a DataLoader.

Look-up order for the folder that holds the four ``.gz`` files:

1. the ``data_dir`` argument (the CLI's ``--data-dir``);
2. the ``CNNSCOPE_DATA`` environment variable;
3. the repository's own ``data/mnist`` (a source checkout ships the files);
4. the user cache (``$XDG_CACHE_HOME/cnnscope/mnist``, default ``~/.cache/cnnscope/mnist``);
5. a download from the canonical mirror into the cache, checksums verified.

A folder may hold a ``SHA256SUMS`` file (``sha256sum`` format); when it does, every ``.gz``
file is checked against it before it is read.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_write_bytes
from .store import cache_dir

__all__ = [
    "FILES",
    "MNIST",
    "DataError",
    "find_data_dir",
    "load_mnist",
    "read_idx",
    "to_float",
]

# The four files, by role, with the names MNIST and Fashion-MNIST both use.
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# IDX magic numbers: 2051 = unsigned-byte 3-D array (images), 2049 = 1-D (labels).
_MAGIC = {"train_images": 2051, "train_labels": 2049, "test_images": 2051, "test_labels": 2049}
# SHA-256 of the *decompressed* MNIST files: independent of how a mirror gzipped them,
# so a download can be verified whichever copy of the originals the mirror serves.
MNIST_CONTENT_SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",  # noqa: E501
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",  # noqa: E501
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",)
VALIDATION_SIZE = 5_000  # TensorFlow's read_data_sets took the first 5,000 training images.
_REPO_DATA = Path(__file__).resolve().parents[2] / "data" / "mnist"


class DataError(RuntimeError):
    """The data could not be found or failed a check; the message says how to fix it."""


@dataclass(frozen=True)
class MNIST:
    """The classic splits as uint8 tensors: images (N, 28, 28), labels (N,) int64.

    ``train`` is 55,000 images, ``validation`` the 5,000 that precede them in the training
    file, ``test`` the 10,000 test images.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    validation_images: torch.Tensor
    validation_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: Path
    checksum: str  # SHA-256 over the four decompressed files, in FILES order

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(images, labels)`` of ``"train"``, ``"validation"`` or ``"test"``."""
        if name not in ("train", "validation", "test"):
            raise ValueError(f"unknown split {name!r}; valid: train, validation, test")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) → float32 (N, 1, 28, 28) in [0, 1], the models' input range."""
    return images.unsqueeze(1).float().div_(255.0)


# More than any MNIST-layout set holds (EMNIST's largest split is ~0.7 GB): a header that
# claims more is damaged or a decompression bomb, refused before the body is decompressed.
MAX_IDX_BYTES = 1 << 31


def read_idx(path: Path, *, expected_magic: int | None = None) -> np.ndarray:
    """Read one gzipped IDX file into a uint8 array, checking its header and length.

    The header is read and checked first; the body is then decompressed in chunks up to
    the size the header states (plus one byte, to notice trailing data), never more.
    """
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(4)
            if len(head) == 4:
                head += f.read(4 * head[3])  # byte 3: the number of dimensions
            dims = _parse_header(head, path, expected_magic)
            count = int(np.prod(dims))
            body = _read_at_most(f, count + 1)
    except (OSError, EOFError, zlib.error) as e:
        # gzip raises BadGzipFile/EOFError on a truncated or corrupt stream.
        raise DataError(
            f"{path}: not a readable gzip file ({e}). The file is truncated or corrupt; "
            "replace it with a fresh copy (delete it to let cnnscope download it again)."
        ) from e
    if len(body) != count:
        more = "at least " if len(body) > count else ""
        raise DataError(
            f"{path}: header says shape {dims} ({count} bytes) but {more}{len(body)} "
            "bytes follow. The file is truncated or corrupt; replace it."
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _parse_header(head: bytes, path: Path, expected_magic: int | None) -> tuple[int, ...]:
    """The dimensions an IDX header states, after checking its magic number and size."""
    if len(head) < 4:
        raise DataError(f"{path}: only {len(head)} bytes after decompression; not an IDX file.")
    zero, dtype_code, ndim = struct.unpack(">HBB", head[:4])
    magic = struct.unpack(">I", head[:4])[0]
    if zero != 0 or dtype_code != 0x08 or (expected_magic is not None and magic != expected_magic):
        want = f"{expected_magic}" if expected_magic is not None else "an unsigned-byte IDX file"
        raise DataError(f"{path}: magic number {magic}, expected {want}. Is it the right file?")
    if len(head) < 4 + 4 * ndim:
        raise DataError(
            f"{path}: header names {ndim} dimensions but only {len(head)} bytes follow the "
            "compression. The file is truncated or corrupt; replace it."
        )
    dims = struct.unpack(f">{ndim}I", head[4:])
    if int(np.prod(dims, dtype=np.float64)) > MAX_IDX_BYTES:
        raise DataError(
            f"{path}: header says shape {dims}, more than the {MAX_IDX_BYTES:,} bytes "
            "cnnscope reads from one file. The file is damaged or not an IDX file; replace it."
        )
    return dims


def _read_at_most(f: gzip.GzipFile, limit: int, chunk: int = 1 << 22) -> bytes:
    """Up to ``limit`` decompressed bytes, in chunks: memory follows the data, not a claim."""
    parts = []
    while limit > 0:
        part = f.read(min(limit, chunk))
        if not part:
            break
        parts.append(part)
        limit -= len(part)
    return b"".join(parts)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_sums(folder: Path) -> dict[str, str]:
    sums_file = folder / "SHA256SUMS"
    if not sums_file.exists():
        return {}
    sums = {}
    for line in sums_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def _candidates(data_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    places = []
    if data_dir is not None:
        places.append(("--data-dir", Path(data_dir)))
    if os.environ.get("CNNSCOPE_DATA"):
        places.append(("$CNNSCOPE_DATA", Path(os.environ["CNNSCOPE_DATA"])))
    places.append(("repository data/mnist", _REPO_DATA))
    places.append(("user cache", cache_dir("mnist")))
    return places


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES.values())


def find_data_dir(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Return the first folder in the look-up order that holds all four files.

    An explicit ``data_dir`` is final: if it lacks a file, that is an error rather than a
    silent fall-through to MNIST (it may be meant to hold Fashion-MNIST).
    """
    places = _candidates(data_dir)
    if data_dir is not None:
        folder = Path(data_dir)
        if _complete(folder):
            return folder
        missing = [n for n in FILES.values() if not (folder / n).is_file()]
        raise DataError(
            f"--data-dir {folder} lacks {', '.join(missing)}. A data folder must hold the "
            f"four IDX files {', '.join(FILES.values())}."
        )
    for _, folder in places:
        if _complete(folder):
            return folder
    tried = "\n".join(f"  - {label}: {folder}" for label, folder in places)
    if download:
        try:
            return _download(cache_dir("mnist"), progress)
        except DataError as e:
            reason = str(e)
    else:
        reason = "downloading was turned off"
    raise DataError(
        f"MNIST not found. Looked in:\n{tried}\nand could not download it ({reason}).\n"
        "Fix: copy the four .gz files into one of those folders, or pass --data-dir DIR "
        "(or set CNNSCOPE_DATA=DIR)."
    )


def _download(folder: Path, progress: Callable[[str], None] | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content_sha in MNIST_CONTENT_SHA256.items():
        target = folder / name
        if target.exists():
            continue
        errors = []
        for mirror in MIRRORS:
            if progress:
                progress(f"downloading {mirror}{name}")
            try:
                with urllib.request.urlopen(mirror + name, timeout=30) as response:
                    payload = response.read()
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                errors.append(f"{mirror}: {e}")
                continue
            try:
                got = hashlib.sha256(gzip.decompress(payload)).hexdigest()
            except (OSError, EOFError, zlib.error) as e:
                errors.append(f"{mirror}{name}: not gzip ({e})")
                continue
            if got != content_sha:
                errors.append(f"{mirror}{name}: content SHA-256 {got}, expected {content_sha}")
                continue
            atomic_write_bytes(target, payload)
            break
        else:
            raise DataError("; ".join(errors))
    sums = "".join(f"{_sha256(folder / n)}  {n}\n" for n in FILES.values())
    atomic_write_bytes(folder / "SHA256SUMS", sums.encode())
    return folder


def verify_checksums(folder: Path) -> dict[str, str]:
    """Check every ``.gz`` against the folder's ``SHA256SUMS`` (if any); return the sums."""
    expected = _read_sums(folder)
    for name in FILES.values():
        if name not in expected:
            continue
        got = _sha256(folder / name)
        if got != expected[name]:
            raise DataError(
                f"{folder / name}: SHA-256 is {got}, expected {expected[name]} (from "
                f"{folder / 'SHA256SUMS'}). The file is corrupt or truncated; replace it "
                "with a fresh copy."
            )
    return expected


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    validation_size: int = VALIDATION_SIZE,
) -> MNIST:
    """Load the four IDX files and split them the way the classic tutorials did.

    Parameters
    ----------
    data_dir
        Folder with the four ``.gz`` files; ``None`` uses the look-up order of this
        module's docstring. Any data set in the MNIST file layout works (Fashion-MNIST).
    download
        Whether to fetch MNIST from the mirror when no folder has it.
    validation_size
        How many of the first training images form the validation split (5,000 as in the
        TensorFlow tutorials, leaving 55,000 to train on).

    Returns
    -------
    MNIST
        uint8 tensors, cached per folder for the life of the process.
    """
    folder = find_data_dir(data_dir, download=download).resolve()
    mtime = os.stat(folder / FILES["train_images"]).st_mtime_ns
    return _load_folder(folder, mtime, validation_size)


@lru_cache(maxsize=4)
def _load_folder(folder: Path, _mtime: int, validation_size: int) -> MNIST:
    verify_checksums(folder)
    arrays = {}
    digest = hashlib.sha256()
    for role, name in FILES.items():
        arr = read_idx(folder / name, expected_magic=_MAGIC[role])
        digest.update(arr.tobytes())
        if role.endswith("images") and arr.shape[1:] != (28, 28):
            raise DataError(
                f"{folder / name}: images of {arr.shape[1:]} pixels; cnnscope's models take "
                "28×28, the MNIST layout."
            )
        if role.endswith("labels") and arr.size and arr.max() > 9:
            raise DataError(f"{folder / name}: label {arr.max()} outside 0–9.")
        arrays[role] = torch.from_numpy(arr.copy())
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(
                f"{folder}: {n_img} {split} images but {n_lab} {split} labels; the files "
                "belong to different data sets."
            )
    train_x, train_y = arrays["train_images"], arrays["train_labels"].long()
    v = validation_size
    if not 0 <= v < len(train_x):
        raise DataError(
            f"{folder}: validation_size {v} must be below the {len(train_x)} training images."
        )
    return MNIST(
        train_images=train_x[v:],
        train_labels=train_y[v:],
        validation_images=train_x[:v],
        validation_labels=train_y[:v],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"].long(),
        source=folder,
        checksum=digest.hexdigest(),
    )
