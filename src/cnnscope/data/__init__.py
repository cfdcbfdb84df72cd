"""Data sets: finding them, reading them (IDX or ``.npz``), checksums, class names.

A data set is a folder (or an ``.npz`` file) with a training and a test split of grayscale
images and integer labels 0..K-1, any size, any number of classes:

- the four IDX files of MNIST's layout (:mod:`cnnscope.data.idx`, gzipped or not), or
- one ``.npz`` with ``x_train, y_train, x_test, y_test`` (:mod:`cnnscope.data.npz`);
- optionally ``classes.txt`` beside it: one class name per line, K lines.

Everything is read whole into memory as uint8 tensors (55 MB for MNIST), which makes every
later batch a slice instead of a trip through a DataLoader.

Look-up order when no folder is given:

1. the ``data_dir`` argument (the CLI's ``--data-dir``): final, never a fall-through;
2. the ``CNNSCOPE_DATA`` environment variable;
3. the repository's own ``data/mnist`` (a source checkout ships the files);
4. the user cache (``$XDG_CACHE_HOME/cnnscope/mnist``, default ``~/.cache/cnnscope/mnist``);
5. for the test split alone (evaluate, explain, the page): the MNIST test set shipped
   inside the package, so a plain ``pip install`` works with no network;
6. for training: a download of MNIST into the cache, checksums verified.

A folder may hold a ``SHA256SUMS`` file (``sha256sum`` format); when it does, every data
file it lists is checked against it before it is read.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .._io import atomic_write_bytes
from ..store import BUNDLED_DATA, REPO_DATA, cache_dir
from .errors import DataError
from .idx import FILES, MAGIC, find_idx, read_idx
from .npz import read_npz

__all__ = [
    "FILES",
    "MNIST",
    "DataError",
    "DataSet",
    "class_names",
    "default_classes",
    "find_data_dir",
    "load_data",
    "load_for",
    "load_mnist",
    "load_test_set",
    "read_classes",
    "read_idx",
    "to_float",
]

# SHA-256 of the *decompressed* MNIST files: independent of how a mirror gzipped them,
# so a download can be verified whichever copy of the originals the mirror serves.
MNIST_CONTENT_SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",  # noqa: E501
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",  # noqa: E501
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# The checksum of all of MNIST (see DataSet.checksum): what the shipped weights record.
# The bundled test set alone carries it too, once its two files match the originals, so
# that a model trained on MNIST is evaluated on "its" data after a plain install.
MNIST_CHECKSUM = "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",)
VALIDATION_SIZE = 5_000  # TensorFlow's read_data_sets took the first 5,000 training images.
CLASSES_FILE = "classes.txt"
MAX_CLASSES = 1000
MAX_NAME = 64  # characters of one class name: it labels a bar and a matrix row
_REPO_DATA = REPO_DATA  # kept for tests that move it
Need = Literal["train", "test"]


def default_classes(k: int) -> tuple[str, ...]:
    """The names of ``k`` unnamed classes: ``"0"`` … ``"k-1"``."""
    return tuple(str(i) for i in range(k))


@dataclass(frozen=True)
class DataSet:
    """The splits as uint8 tensors: images (N, H, W), labels (N,) int64; and what they are.

    ``train`` is the training file less its first ``validation`` images (55,000 + 5,000
    for MNIST), ``test`` the test file. A test-only set (the bundled MNIST test set) has
    empty training splits.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    validation_images: torch.Tensor
    validation_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: Path
    checksum: str  # SHA-256 over the arrays (for IDX: the four decompressed files, in order)
    classes: tuple[str, ...] = field(default_factory=lambda: default_classes(10))
    format: str = "idx"  # "idx" or "npz"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every image."""
        return (int(self.test_images.shape[1]), int(self.test_images.shape[2]))

    @property
    def has_train(self) -> bool:
        return len(self.train_images) + len(self.validation_images) > 0

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(images, labels)`` of ``"train"``, ``"validation"`` or ``"test"``."""
        if name not in ("train", "validation", "test"):
            raise ValueError(f"unknown split {name!r}; valid: train, validation, test")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description: format, sizes, classes and per-class counts."""

        def counts(labels: torch.Tensor) -> list[int]:
            return [int(c) for c in torch.bincount(labels, minlength=self.num_classes)]

        return {
            "source": str(self.source),
            "format": self.format,
            "sha256": self.checksum,
            "image_size": list(self.image_size),
            "classes": list(self.classes),
            "train": len(self.train_images),
            "validation": len(self.validation_images),
            "test": len(self.test_images),
            "train_counts": counts(torch.cat([self.validation_labels, self.train_labels])),
            "test_counts": counts(self.test_labels),
        }


MNIST = DataSet  # the name of the first version, kept for callers and type hints


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W) → float32 (N, 1, H, W) in [0, 1], the models' input range."""
    return images.unsqueeze(1).float().div_(255.0)


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


def _npz_in(folder: Path) -> Path | None:
    """The one ``.npz`` in ``folder``; several are ambiguous."""
    found = sorted(folder.glob("*.npz"))
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(
            f"{folder}: several .npz files ({names}); pass --data-dir with the one to use."
        )
    return found[0] if found else None


def _holds(place: Path, need: Need) -> bool:
    """Whether ``place`` (a folder or an .npz) holds a data set good for ``need``."""
    if place.is_file():
        return place.suffix == ".npz"
    if not place.is_dir():
        return False
    if _npz_in(place) is not None:
        return True
    roles = ("test_images", "test_labels") if need == "test" else tuple(FILES)
    return all(find_idx(place, r) is not None for r in roles)


def _candidates(data_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    places = []
    if data_dir is not None:
        places.append(("--data-dir", Path(data_dir)))
    if os.environ.get("CNNSCOPE_DATA"):
        places.append(("$CNNSCOPE_DATA", Path(os.environ["CNNSCOPE_DATA"])))
    places.append(("repository data/mnist", _REPO_DATA))
    places.append(("user cache", cache_dir("mnist")))
    return places


def find_data_dir(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    progress: Callable[[str], None] | None = None,
    need: Need = "train",
) -> Path:
    """Return the first place in the look-up order that holds a data set.

    An explicit ``data_dir`` is final: if it lacks a file, that is an error rather than a
    silent fall-through to MNIST (it may be meant to hold another data set). With
    ``need="test"`` a folder with only the two test files will do, and the MNIST test set
    inside the package ends the search.
    """
    if data_dir is not None:
        place = Path(data_dir)
        if _holds(place, need):
            return place
        if not place.exists():
            raise DataError(f"--data-dir {place}: no such folder or .npz file.")
        if place.is_file():
            raise DataError(
                f"--data-dir {place}: not an .npz; give a folder with the four IDX files "
                "or an .npz with x_train, y_train, x_test, y_test."
            )
        missing = [n for r, n in FILES.items() if find_idx(place, r) is None]
        raise DataError(
            f"--data-dir {place} lacks {', '.join(missing)}. A data folder holds the "
            f"four IDX files {', '.join(FILES.values())} (gzipped or not), or one .npz "
            "with x_train, y_train, x_test, y_test."
        )
    places = _candidates(None)
    for _, folder in places:
        if _holds(folder, need):
            return folder
    if need == "test" and _holds(BUNDLED_DATA, "test"):
        return BUNDLED_DATA
    tried = "\n".join(f"  - {label}: {folder}" for label, folder in places)
    if download:
        try:
            return _download(cache_dir("mnist"), progress)
        except DataError as e:
            reason = str(e)
    else:
        reason = "downloading was turned off"
    what = "the MNIST training set" if need == "train" else "MNIST"
    raise DataError(
        f"{what} not found. Looked in:\n{tried}\nand could not download it ({reason}).\n"
        f"Fix: copy the four MNIST .gz files ({', '.join(FILES.values())}) into one of "
        "those folders, or pass --data-dir DIR (or set CNNSCOPE_DATA=DIR) with your own "
        "data set."
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
    """Check every file ``SHA256SUMS`` lists (if there is one); return the sums."""
    expected = _read_sums(folder)
    for name, want in expected.items():
        path = folder / name
        if not path.is_file():
            continue  # a test-only copy of a folder lists the training files too
        got = _sha256(path)
        if got != want:
            raise DataError(
                f"{path}: SHA-256 is {got}, expected {want} (from "
                f"{folder / 'SHA256SUMS'}). The file is corrupt or truncated; replace it "
                "with a fresh copy."
            )
    return expected


def read_classes(path: Path, k: int) -> tuple[str, ...]:
    """The names in ``classes.txt`` (one per line), checked against ``k`` labelled classes.

    The file may name more classes than the labels use (a class absent from the data), not
    fewer. Blank lines at the end are ignored.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e}); write one class name per line (UTF-8).") from e
    while lines and not lines[-1].strip():
        lines.pop()
    names = tuple(line.strip() for line in lines)
    problems = []
    if len(names) < max(k, 1):
        problems.append(f"names {len(names)} classes but the labels go up to {k - 1}")
    if len(names) > MAX_CLASSES:
        problems.append(f"names {len(names)} classes, more than {MAX_CLASSES}")
    if any(not n for n in names):
        problems.append(f"line {names.index('') + 1} is blank")
    if any(len(n) > MAX_NAME for n in names):
        problems.append(f"a name is longer than {MAX_NAME} characters")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        problems.append(f"{dup!r} appears twice")
    if problems:
        raise DataError(
            f"{path}: {'; '.join(problems)}. Write one distinct name per line, line i "
            "naming label i."
        )
    return names


def load_data(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    validation_size: int | None = None,
    need: Need = "train",
) -> DataSet:
    """Find and load a data set (IDX or ``.npz``), checked, with its class names.

    Parameters
    ----------
    data_dir
        A folder with the four IDX files or one ``.npz``, or an ``.npz`` file; ``None``
        uses the look-up order of this module's docstring.
    download
        Whether to fetch MNIST from the mirror when no place has a training set.
    validation_size
        How many of the first training images form the validation split. ``None``: a
        twelfth of the training file, at most 5,000 (MNIST: 5,000, as the TensorFlow
        tutorials did, leaving 55,000 to train on).
    need
        ``"test"`` accepts a test split alone, and ends at the MNIST test set inside the
        package: what evaluation and the page need.

    Returns
    -------
    DataSet
        uint8 tensors, cached per place for the life of the process.
    """
    place = find_data_dir(data_dir, download=download, need=need).resolve()
    files = [p for p in ([place] if place.is_file() else place.iterdir()) if p.is_file()]
    stamp = tuple(sorted((p.name, os.stat(p).st_mtime_ns) for p in files))
    return _load(place, stamp, validation_size)


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    validation_size: int | None = None,
) -> DataSet:
    """A data set with a training split (MNIST by default); see :func:`load_data`."""
    return load_data(data_dir, download=download, validation_size=validation_size)


def load_test_set(data_dir: str | os.PathLike[str] | None = None) -> DataSet:
    """A data set for evaluation and the page: a test split is enough, nothing downloads.

    Without ``data_dir`` and with no MNIST on disk, this is the MNIST test set shipped
    inside the package.
    """
    return load_data(data_dir, download=False, need="test")


@lru_cache(maxsize=4)
def _load(place: Path, _stamp: tuple[Any, ...], validation_size: int | None) -> DataSet:
    folder = place.parent if place.is_file() else place
    npz = place if place.is_file() else _npz_in(place)
    if npz is not None:
        arrays, fmt = read_npz(npz), "npz"
        digest = _sha256(npz)
        source = npz
    else:
        arrays, digest, fmt, source = _read_idx_folder(folder), "", "idx", folder
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(
                f"{source}: {n_img} {split} images but {n_lab} {split} labels; the files "
                "belong to different data sets."
            )
    if len(arrays["test_images"]) == 0:
        raise DataError(f"{source}: the test split is empty; cnnscope evaluates on it.")
    if fmt == "idx":
        digest = _idx_checksum(arrays)
    top = max(int(a.max(initial=0)) for a in (arrays["train_labels"], arrays["test_labels"]))
    classes_file = folder / CLASSES_FILE
    if classes_file.is_file():
        classes = read_classes(classes_file, top + 1)
    else:
        if top + 1 > MAX_CLASSES:
            raise DataError(f"{source}: label {top}; cnnscope takes at most {MAX_CLASSES} classes.")
        classes = default_classes(max(top + 1, 2))
    train_x = torch.from_numpy(np.array(arrays["train_images"]))
    train_y = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    v = min(VALIDATION_SIZE, len(train_x) // 12) if validation_size is None else validation_size
    if len(train_x) and not 0 <= v < len(train_x):
        raise DataError(
            f"{source}: validation_size {v} must be below the {len(train_x)} training images."
        )
    v = min(v, len(train_x))
    return DataSet(
        train_images=train_x[v:],
        train_labels=train_y[v:],
        validation_images=train_x[:v],
        validation_labels=train_y[:v],
        test_images=torch.from_numpy(np.array(arrays["test_images"])),
        test_labels=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        source=source,
        checksum=digest,
        classes=classes,
        format=fmt,
    )


def _read_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    """The IDX arrays of ``folder``; a folder without training files gives empty ones."""
    verify_checksums(folder)
    arrays: dict[str, np.ndarray] = {}
    for role in FILES:
        path = find_idx(folder, role)
        if path is None:  # only the training files may be absent (see _holds)
            arrays[role] = np.zeros((0, 0, 0) if role.endswith("images") else (0,), np.uint8)
            continue
        arr = read_idx(path, expected_magic=MAGIC[role])
        arrays[role] = arr
    if len(arrays["train_images"]) and (
        arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]
    ):
        raise DataError(
            f"{folder}: training images are {arrays['train_images'].shape[1:]} but test "
            f"images {arrays['test_images'].shape[1:]}; both splits need one image size."
        )
    if not len(arrays["train_images"]):
        h, w = arrays["test_images"].shape[1:]
        arrays["train_images"] = np.zeros((0, h, w), np.uint8)
    return arrays


def _idx_checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the decompressed arrays in FILES order (the bundled set: MNIST's)."""
    digest = hashlib.sha256()
    for role in FILES:
        digest.update(arrays[role].tobytes())
    if not len(arrays["train_images"]):
        test = {
            FILES[r]: hashlib.sha256(arrays[r].tobytes()).hexdigest()
            for r in ("test_images", "test_labels")
        }
        if all(_content_matches(name, sha) for name, sha in test.items()):
            return MNIST_CHECKSUM
    return digest.hexdigest()


# SHA-256 of the test files' *arrays* (header stripped), for recognising MNIST's test set.
_MNIST_TEST_ARRAYS = {
    "t10k-images-idx3-ubyte.gz": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "t10k-labels-idx1-ubyte.gz": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}


def _content_matches(name: str, sha: str) -> bool:
    return _MNIST_TEST_ARRAYS.get(name) == sha


def load_for(meta: Mapping[str, Any], data_dir: str | os.PathLike[str] | None = None) -> DataSet:
    """The test data of the weights whose metadata is ``meta``: the set they were trained on.

    ``data_dir`` (the CLI's ``--data-dir``) is the user's choice and final. Otherwise the
    place recorded at training (``meta["data"]["source"]``, or the run's ``data_dir``) is
    used if it still exists, else the default look-up (MNIST, the bundled test set last);
    a set whose checksum differs from the one recorded is refused, naming the fix.
    """
    if data_dir is not None:
        return load_test_set(data_dir)
    recorded, config = _mapping(meta.get("data")), _mapping(meta.get("train_config"))
    want = recorded.get("sha256")
    for place in (recorded.get("source"), config.get("data_dir")):
        if isinstance(place, str) and place and Path(place).exists():
            data = load_test_set(place)
            if isinstance(want, str) and want and want != data.checksum:
                raise DataError(
                    f"{place}: changed since these weights were trained on it (SHA-256 "
                    f"{want[:12]}… then, {data.checksum[:12]}… now). Pass --data-dir {place} "
                    "to evaluate on it as it is now, or restore the data they were trained on."
                )
            return data
    data = load_test_set(None)
    if isinstance(want, str) and want and want != data.checksum:
        where = recorded.get("source") or config.get("data_dir") or "another data set"
        raise DataError(
            f"these weights were trained on {where} (SHA-256 {want[:12]}…), which is gone; "
            f"found only {data.source} (SHA-256 {data.checksum[:12]}…). Pass --data-dir "
            "with the data set they were trained on."
        )
    return data


def class_names(meta: Mapping[str, Any], k: int, data: DataSet | None = None) -> tuple[str, ...]:
    """The names of a model's ``k`` outputs: from its weights' metadata (written by
    training), else from ``data`` if it has ``k`` classes, else ``"0"`` … ``"k-1"``."""
    names = meta.get("classes")
    if isinstance(names, list) and len(names) == k and all(isinstance(n, str) for n in names):
        return tuple(names)
    if data is not None and data.num_classes == k:
        return data.classes
    return default_classes(k)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
