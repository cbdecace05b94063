"""IDX reading: gzipped and raw files the test writes, damaged files, and Debian's Fashion-MNIST."""

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from keras_cnns.data import DataError, load_source, read_idx, write_idx
from keras_cnns.data.idx import find_idx_files

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and not re.search(r"\.\s+[A-Z]", message)


def write_mnist_like(folder: Path, *, gz: bool, n_train=60, n_test=20, seed=0):
    """Four IDX files of 10 classes in `folder`, MNIST's names; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = {}
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels)
        data[split] = (images, labels)
    return data


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("a.gz" if gz else "a"), array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_read_idx_other_dtypes(tmp_path):
    array = np.array([[1, -2], [300000, 4]], np.int32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "i", array)), array)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_named_idx_dir_loads(tmp_path, gz):
    written = write_mnist_like(tmp_path / "m", gz=gz)
    source = load_source("mnist", data_dir=str(tmp_path / "m"))
    info = source.info
    assert info.name == "mnist" and info.class_names == tuple("0123456789")
    assert info.native_size == (28, 28) and info.channels == 1
    assert info.allow_horizontal_flip is False
    # No validation split in IDX: 10% of each class of train is carved (0.6 rounds to 1).
    assert info.split_sizes == {"train": 50, "validation": 10, "test": 20}
    x, y = source.arrays("test")
    assert x.shape == (20, 28, 28, 1) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x[..., 0], written["t10k"][0])
    np.testing.assert_array_equal(y, written["t10k"][1])
    train_x, train_y = source.arrays("train")
    val_x, val_y = source.arrays("validation")
    assert np.bincount(val_y).tolist() == [1] * 10
    rows = {r.tobytes() for r in np.concatenate([train_x, val_x])}
    assert rows == {r[..., None].tobytes() for r in written["train"][0]}


def test_gz_and_raw_give_the_same_fingerprint_and_edits_change_it(tmp_path):
    write_mnist_like(tmp_path / "gz", gz=True)
    write_mnist_like(tmp_path / "raw", gz=False)
    a = load_source("mnist", str(tmp_path / "gz")).info.fingerprint
    b = load_source("mnist", str(tmp_path / "raw")).info.fingerprint
    assert a == b and re.fullmatch(r"[0-9a-f]{64}", a)
    images = read_idx(tmp_path / "raw" / "t10k-images-idx3-ubyte")
    images[3, 5, 5] ^= 1
    write_idx(tmp_path / "raw" / "t10k-images-idx3-ubyte", images)
    assert load_source("mnist", str(tmp_path / "raw")).info.fingerprint != a


def test_subfolder_and_kaggle_names_are_found(tmp_path):
    write_mnist_like(tmp_path / "fashion-mnist", gz=True)
    source = load_source("fashion_mnist", data_dir=str(tmp_path))
    assert source.info.class_names[0] == "T-shirt/top" and source.info.allow_horizontal_flip
    kaggle = tmp_path / "kaggle"
    kaggle.mkdir()
    (kaggle / "train-images.idx3-ubyte").touch()
    assert ("train", "images") in find_idx_files(kaggle)


def test_generic_idx_source(tmp_path):
    write_mnist_like(tmp_path / "any", gz=False)
    source = load_source("idx", data_dir=str(tmp_path / "any"))
    assert source.info.name == "idx:any" and source.info.num_classes == 10


def test_truncated_idx_file_is_one_clear_sentence(tmp_path):
    write_mnist_like(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as err:
        load_source("mnist", str(tmp_path))
    assert one_sentence(str(err.value)) and str(path) in str(err.value)


def test_truncated_gzip_is_one_clear_sentence(tmp_path):
    write_mnist_like(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="gzip") as err:
        load_source("mnist", str(tmp_path))
    assert one_sentence(str(err.value))


def test_bad_magic_is_one_clear_sentence(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(gzip.compress(b"PK\x03\x04 not an idx file"))
    with pytest.raises(DataError, match="not an IDX file") as err:
        read_idx(path)
    assert one_sentence(str(err.value))


def test_label_count_mismatch(tmp_path):
    write_mnist_like(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(7, np.uint8))
    with pytest.raises(DataError, match="one label per image") as err:
        load_source("mnist", str(tmp_path))
    assert one_sentence(str(err.value))


def test_missing_file_and_missing_directory(tmp_path):
    write_mnist_like(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte") as err:
        load_source("mnist", str(tmp_path))
    assert one_sentence(str(err.value))
    with pytest.raises(DataError, match="does not exist") as err:
        load_source("fashion_mnist", str(tmp_path / "nowhere"))
    assert one_sentence(str(err.value))


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is absent")
def test_debian_fashion_mnist():
    source = load_source("fashion_mnist", data_dir=str(FASHION_DIR))
    info = source.info
    assert info.split_sizes == {"train": 54000, "validation": 6000, "test": 10000}
    assert info.native_size == (28, 28) and info.channels == 1 and info.num_classes == 10
    assert info.class_names[9] == "Ankle boot"
    # The published Fashion-MNIST statistics (on all 60k train images) are 0.2860 / 0.3530.
    assert info.mean[0] == pytest.approx(0.2860, abs=2e-3)
    assert info.std[0] == pytest.approx(0.3530, abs=2e-3)
    x, y = source.arrays("test")
    assert x.shape == (10000, 28, 28, 1) and np.bincount(y).tolist() == [1000] * 10
    _, val_y = source.arrays("validation")
    assert np.bincount(val_y).tolist() == [600] * 10


def test_gzip_inflating_past_its_header_is_refused_after_one_byte_too_many(tmp_path):
    images = np.zeros((30, 8, 8), np.uint8)
    good = write_idx(tmp_path / "good-images-idx3-ubyte", images).read_bytes()
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip.compress(good + bytes(64 << 20), compresslevel=1))
    with pytest.raises(DataError, match="more data than the 1920 bytes its header promises"):
        read_idx(bomb)
    np.testing.assert_array_equal(read_idx(tmp_path / "good-images-idx3-ubyte"), images)


def test_a_header_promising_more_than_memory_is_refused_unread(tmp_path, monkeypatch):
    import keras_cnns.machine

    path = write_idx(tmp_path / "x-images-idx3-ubyte.gz", np.zeros((30, 8, 8), np.uint8))
    monkeypatch.setattr(keras_cnns.machine, "machine_memory", lambda: 3000)
    with pytest.raises(DataError, match=r"promises 1920 bytes .*30 x 8 x 8.* 3000 bytes"):
        read_idx(path)
