"""IDX files, the format of MNIST and Fashion-MNIST: gzipped or plain, any number of classes.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the array. cnnscope reads unsigned
bytes only (type 0x08): images (N, H, W) and labels (N,).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from io import BufferedIOBase
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["FILES", "MAGIC", "MAX_IDX_BYTES", "find_idx", "read_idx"]

# The four files, by role, with the names MNIST and Fashion-MNIST both use. The same
# names without ``.gz`` (uncompressed) are accepted too.
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# IDX magic numbers: 2051 = unsigned-byte 3-D array (images), 2049 = 1-D (labels).
MAGIC = {"train_images": 2051, "train_labels": 2049, "test_images": 2051, "test_labels": 2049}
# More than any MNIST-layout set holds (EMNIST's largest split is ~0.7 GB): a header that
# claims more is damaged or a decompression bomb, refused before the body is read.
MAX_IDX_BYTES = 1 << 31
_GZIP_MAGIC = b"\x1f\x8b"


def find_idx(folder: Path, role: str) -> Path | None:
    """The file of ``role`` in ``folder``: the ``.gz`` name, else the same without ``.gz``."""
    for name in (FILES[role], FILES[role].removesuffix(".gz")):
        if (folder / name).is_file():
            return folder / name
    return None


def _open(path: Path) -> BufferedIOBase:
    with open(path, "rb") as f:
        gzipped = f.read(2) == _GZIP_MAGIC
    if gzipped:
        return gzip.open(path, "rb")
    return open(path, "rb")  # the caller closes it


def read_idx(path: Path, *, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a uint8 array, checking header and length.

    The header is read and checked first; the body is then read in chunks up to the size
    the header states (plus one byte, to notice trailing data), never more.
    """
    try:
        with _open(path) as f:
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


def _read_at_most(f: BufferedIOBase, limit: int, chunk: int = 1 << 22) -> bytes:
    """Up to ``limit`` bytes, in chunks: memory follows the data, not a header's claim."""
    parts = []
    while limit > 0:
        part = f.read(min(limit, chunk))
        if not part:
            break
        parts.append(part)
        limit -= len(part)
    return b"".join(parts)
