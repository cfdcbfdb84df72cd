from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnscope import data as data_mod
from cnnscope.data import FILES, DataError, load_mnist, read_idx, to_float
from cnnscope.data import idx as idx_mod

from .conftest import make_idx_dir, write_idx, write_sums


def test_reads_synthetic_idx_and_splits(idx_dir: Path) -> None:
    d = load_mnist(idx_dir, validation_size=20)
    assert d.train_images.shape == (100, 28, 28) and d.train_images.dtype == torch.uint8
    assert d.validation_images.shape == (20, 28, 28)
    assert d.test_images.shape == (40, 28, 28)
    assert d.train_labels.dtype == torch.int64
    # Validation is the *first* images of the training file, as TensorFlow split it.
    full = read_idx(idx_dir / FILES["train_images"])
    assert torch.equal(d.validation_images, torch.from_numpy(full[:20].copy()))
    assert torch.equal(d.train_images, torch.from_numpy(full[20:].copy()))
    # Each synthetic image has its label's row lit.
    row = 2 + 2 * int(d.test_labels[0])
    assert int(d.test_images[0, row, 10]) == 255


def test_to_float_range_and_shape(idx_dir: Path) -> None:
    x = to_float(load_mnist(idx_dir, validation_size=20).test_images)
    assert x.shape == (40, 1, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) == 1.0


def test_real_mnist_classic_splits(mnist) -> None:
    assert len(mnist.train_images) == 55_000
    assert len(mnist.validation_images) == 5_000
    assert len(mnist.test_images) == 10_000
    assert mnist.test_labels.bincount().tolist()[:3] == [980, 1135, 1032]
    assert len(mnist.checksum) == 64


def test_truncated_gz_names_file(idx_dir: Path) -> None:
    target = idx_dir / FILES["test_images"]
    target.write_bytes(target.read_bytes()[:500])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz") as e:
        load_mnist(idx_dir, validation_size=20)
    assert "truncated or corrupt" in str(e.value)


def test_checksum_mismatch_names_file_and_expected(idx_dir: Path) -> None:
    write_sums(idx_dir)
    sums = dict(line.split()[::-1] for line in (idx_dir / "SHA256SUMS").read_text().splitlines())
    expected = sums[FILES["test_images"]]
    write_idx(idx_dir / FILES["test_images"], np.zeros((40, 28, 28), np.uint8))
    with pytest.raises(DataError) as e:
        load_mnist(idx_dir, validation_size=20)
    assert FILES["test_images"] in str(e.value) and expected in str(e.value)


def test_wrong_magic_number(idx_dir: Path) -> None:
    write_idx(idx_dir / FILES["train_labels"], np.zeros(120, np.uint8), magic=2051)
    with pytest.raises(DataError, match=r"magic number 2051, expected 2049"):
        load_mnist(idx_dir, validation_size=20)


def test_header_length_mismatch(idx_dir: Path) -> None:
    path = idx_dir / FILES["train_labels"]
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-3]))
    with pytest.raises(DataError, match="bytes follow"):
        load_mnist(idx_dir, validation_size=20)


@pytest.mark.parametrize("kept", [8, 11, 15])
def test_truncated_header_names_file(idx_dir: Path, kept: int) -> None:
    # An images file's header is 16 bytes (magic + 3 dimensions); cut inside it.
    path = idx_dir / FILES["train_images"]
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:kept]))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: header names 3 dim"):
        read_idx(path, expected_magic=2051)


def test_header_claiming_gigabytes_refused_before_reading(idx_dir: Path, monkeypatch) -> None:
    # 100,000 × 100,000 × 28 bytes claimed, a few bytes held: a damaged file or a bomb.
    path = idx_dir / FILES["train_images"]
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", 0x0803, 100_000, 100_000, 28) + b"\0" * 64)
    monkeypatch.setattr(idx_mod, "_read_at_most", None)  # the body must not be read
    with pytest.raises(DataError, match=r"more than the 2,147,483,648 bytes"):
        read_idx(path, expected_magic=2051)


def test_trailing_bytes_reported(idx_dir: Path) -> None:
    path = idx_dir / FILES["train_labels"]
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()) + b"\1\2"))
    with pytest.raises(DataError, match="but at least 121 bytes follow"):
        read_idx(path)


def test_count_mismatch_between_images_and_labels(tmp_path: Path) -> None:
    folder = make_idx_dir(tmp_path / "a")
    write_idx(folder / FILES["test_labels"], np.zeros(39, np.uint8))
    with pytest.raises(DataError, match="40 test images but 39 test labels"):
        load_mnist(folder, validation_size=20)


def test_explicit_dir_missing_file_is_an_error(idx_dir: Path) -> None:
    (idx_dir / FILES["train_labels"]).unlink()
    with pytest.raises(DataError, match=r"lacks train-labels-idx1-ubyte\.gz"):
        load_mnist(idx_dir)


def test_lookup_order_env_then_repo(monkeypatch, tmp_path: Path) -> None:
    env_dir = make_idx_dir(tmp_path / "env")
    monkeypatch.setenv("CNNSCOPE_DATA", str(env_dir))
    assert data_mod.find_data_dir() == env_dir
    monkeypatch.delenv("CNNSCOPE_DATA")
    assert data_mod.find_data_dir() == data_mod._REPO_DATA


def test_missing_everywhere_lists_places(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CNNSCOPE_DATA", raising=False)
    monkeypatch.setattr(data_mod, "_REPO_DATA", tmp_path / "repo")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError) as e:
        data_mod.find_data_dir(download=False)
    text = str(e.value)
    assert str(tmp_path / "repo") in text and str(tmp_path / "cache") in text
    assert "--data-dir" in text


def test_download_verifies_content(monkeypatch, tmp_path: Path) -> None:
    """The mirror's bytes are checked against the known content SHA-256 before use."""
    served = {n: (data_mod._REPO_DATA / n).read_bytes() for n in FILES.values()}
    served[FILES["test_labels"]] = gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8)

    class Response:
        def __init__(self, payload: bytes) -> None:
            self.payload = payload

        def read(self) -> bytes:
            return self.payload

        def __enter__(self):
            return self

        def __exit__(self, *a) -> None: ...

    monkeypatch.setattr(
        data_mod.urllib.request,
        "urlopen",
        lambda url, timeout: Response(served[url.rsplit("/", 1)[1]]),
    )
    with pytest.raises(DataError, match="content SHA-256"):
        data_mod._download(tmp_path / "cache", None)
    assert not (tmp_path / "cache" / FILES["test_labels"]).exists()
    served[FILES["test_labels"]] = (data_mod._REPO_DATA / FILES["test_labels"]).read_bytes()
    folder = data_mod._download(tmp_path / "cache", None)
    assert (folder / "SHA256SUMS").exists()
    assert load_mnist(folder).checksum == load_mnist().checksum


# --- any data: .npz, classes.txt, plain IDX, the bundled test set -----------------------


def test_npz_with_classes(shapes_dir: Path) -> None:
    d = data_mod.load_data(shapes_dir)
    assert d.format == "npz" and d.source == (shapes_dir / "shapes.npz").resolve()
    assert d.classes == ("bar", "pillar", "cross", "ring") and d.num_classes == 4
    assert d.image_size == (28, 28)
    # 320 training images: a twelfth (26) for validation; 80 test images from floats.
    assert (len(d.train_images), len(d.validation_images), len(d.test_images)) == (294, 26, 80)
    assert d.test_images.dtype == torch.uint8 and int(d.test_images.max()) == 255
    info = d.describe()
    assert info["test_counts"] == [20, 20, 20, 20] and sum(info["train_counts"]) == 320
    # The .npz file itself may be given, and the checksum is the file's.
    assert data_mod.load_data(shapes_dir / "shapes.npz").checksum == d.checksum


def test_npz_float_images_round_to_uint8(tmp_path: Path) -> None:
    x = np.array([[[0.0, 0.5], [1.0, 0.2]]] * 3, np.float64)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=[0, 1, 2], x_test=x, y_test=[2, 1, 0])
    d = data_mod.load_data(tmp_path, validation_size=0)
    assert d.test_images[0].tolist() == [[0, 128], [255, 51]]
    assert d.classes == ("0", "1", "2") and d.image_size == (2, 2)


def _npz(tmp_path: Path, **override) -> Path:
    x = np.zeros((4, 8, 8), np.uint8)
    arrays = {"x_train": x, "y_train": np.arange(4), "x_test": x, "y_test": np.arange(4)}
    np.savez(tmp_path / "bad.npz", **{**arrays, **override})
    return tmp_path / "bad.npz"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"y_test": np.arange(3)}, "x_test has 4 images but y_test 3 labels"),
        ({"y_train": np.array([0, 1, -1, 2])}, "y_train holds label -1"),
        ({"y_train": np.array([0.0, 1, 2, 3])}, "give integer labels"),
        ({"x_test": np.full((4, 8, 8), np.nan)}, "x_test holds NaN"),
        ({"x_test": np.full((4, 8, 8), 3.0)}, r"floats span 3–3; give floats in \[0, 1\]"),
        ({"x_test": np.zeros((4, 3, 8, 8))}, "give grayscale images"),
        ({"x_test": np.zeros((4, 2000, 2), np.uint8)}, "sides of 1–1024 pixels"),
        ({"x_test": np.zeros((4, 9, 9), np.uint8)}, "both splits need one image size"),
        ({"x_train": np.array([{"a": 1}] * 4, dtype=object)}, "pickled Python objects"),
    ],
)
def test_npz_bad_input_names_file_and_fix(tmp_path: Path, override, message) -> None:
    path = _npz(tmp_path, **override)
    with pytest.raises(DataError, match=message) as e:
        data_mod.load_data(path)
    assert str(path) in str(e.value)


def test_npz_missing_key_and_not_a_zip(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x_train=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match="no array y_train, x_test, y_test"):
        data_mod.load_data(tmp_path)
    (tmp_path / "d.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=r"not an \.npz archive"):
        data_mod.load_data(tmp_path)


def test_classes_txt_checked(shapes_dir: Path) -> None:
    (shapes_dir / "classes.txt").write_text("bar\npillar\ncross\n")
    with pytest.raises(DataError, match=r"classes\.txt: names 3 classes but the labels go up to 3"):
        data_mod.load_data(shapes_dir)
    (shapes_dir / "classes.txt").write_text("a\nb\na\nd\n")
    with pytest.raises(DataError, match="'a' appears twice"):
        data_mod.load_data(shapes_dir)
    # More names than labels: a class absent from the data is allowed.
    (shapes_dir / "classes.txt").write_text("a\nb\nc\nd\ne\n\n")
    assert data_mod.load_data(shapes_dir).classes == ("a", "b", "c", "d", "e")


def test_plain_idx_and_any_class_count(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 48), ("t10k", 16)):
        labels = (np.arange(n) % 12).astype(np.uint8)
        images = rng.integers(0, 255, (n, 20, 16)).astype(np.uint8)
        for name, arr, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
            header = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (folder / f"{prefix}-{name}-ubyte").write_bytes(header + arr.tobytes())
    d = data_mod.load_data(folder)
    assert d.num_classes == 12 and d.image_size == (20, 16) and d.format == "idx"
    assert len(d.test_images) == 16


def test_bundled_test_set_is_mnist(monkeypatch, tmp_path: Path, mnist) -> None:
    """With no data anywhere, the test split comes from the package, carrying MNIST's sum."""
    monkeypatch.delenv("CNNSCOPE_DATA", raising=False)
    monkeypatch.setattr(data_mod, "_REPO_DATA", tmp_path / "repo")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    d = data_mod.load_test_set()
    assert d.source == data_mod.BUNDLED_DATA.resolve() and not d.has_train
    assert torch.equal(d.test_images, mnist.test_images)
    assert d.checksum == mnist.checksum == data_mod.MNIST_CHECKSUM
    # Training still needs the training set, and says where to put it.
    with pytest.raises(DataError, match="MNIST training set not found") as e:
        data_mod.load_mnist(download=False)
    assert "--data-dir" in str(e.value) and str(tmp_path / "cache") in str(e.value)


def test_load_for_uses_the_data_the_weights_were_trained_on(shapes_dir: Path, tmp_path) -> None:
    npz = shapes_dir / "shapes.npz"
    d = data_mod.load_data(shapes_dir)
    meta = {"data": {"sha256": d.checksum, "source": str(npz)}, "classes": list(d.classes)}
    assert data_mod.load_for(meta).source == npz.resolve()
    # --data-dir wins over the metadata.
    assert data_mod.load_for(meta, data_mod._REPO_DATA).num_classes == 10
    # The recorded place, changed since: refused, not silently evaluated on other data.
    changed = {**meta, "data": {"sha256": "cd" * 32, "source": str(npz)}}
    with pytest.raises(DataError, match=r"changed since these weights were trained on it"):
        data_mod.load_for(changed)
    # Recorded data that is gone: refused with the fix, not evaluated on MNIST.
    gone = {"data": {"sha256": "ab" * 32, "source": str(tmp_path / "gone.npz")}}
    with pytest.raises(DataError, match=r"which is gone.*Pass --data-dir"):
        data_mod.load_for(gone)
    # Shipped weights (MNIST's checksum, no place recorded): MNIST.
    assert data_mod.load_for({"data": {"sha256": data_mod.MNIST_CHECKSUM}}).num_classes == 10
    # Class names: the weights' own, else the data's when K agrees, else numbers.
    assert data_mod.class_names(meta, 4) == ("bar", "pillar", "cross", "ring")
    assert data_mod.class_names({}, 4, d) == d.classes
    assert data_mod.class_names({"classes": ["a"]}, 3) == ("0", "1", "2")


def _crafted_npz(path: Path, x_train_npy: bytes) -> Path:
    """An .npz whose x_train member is the given raw .npy bytes (the rest well formed)."""
    import io
    import zipfile

    x = np.zeros((4, 8, 8), np.uint8)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x_train.npy", x_train_npy)
        for key, arr in {"y_train": np.arange(4), "x_test": x, "y_test": np.arange(4)}.items():
            buf = io.BytesIO()
            np.save(buf, arr)
            z.writestr(f"{key}.npy", buf.getvalue())
    return path


def test_npz_header_claiming_more_than_it_holds_is_refused_before_allocating(
    tmp_path: Path,
) -> None:
    # Found from outside: a header declaring (10**5, 1000, 1000) over no data made numpy
    # allocate 93 GiB: a MemoryError traceback instead of one line.
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (10**5, 1000, 1000)}
    )
    huge = _crafted_npz(tmp_path / "huge.npz", header.getvalue())
    with pytest.raises(DataError, match="declares 100,000,000,000 bytes of data but holds 0"):
        data_mod.load_data(huge)
    small = io.BytesIO()
    np.save(small, np.zeros((4, 8, 8), np.uint8))
    cut = _crafted_npz(tmp_path / "cut.npz", small.getvalue()[:-10])
    with pytest.raises(DataError, match="declares 256 bytes of data but holds 246"):
        data_mod.load_data(cut)
